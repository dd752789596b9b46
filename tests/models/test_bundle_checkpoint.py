"""Save a bundle and load it back through the real-checkpoint path (from_pretrained + AutoProcessor)."""

import pytest
import torch

from vlshield.models import ModelOptions, build_model

from .model_helpers import FAMILIES, PROMPTS, RESPONSES, make_images, tiny, train_steps


def _logits(bundle, batch):
    with torch.no_grad():
        return bundle.model(**batch).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_bundle_loads_back_with_identical_batches_and_logits(family, tmp_path):
    bundle = tiny(family)
    images = make_images(4)
    train_steps(bundle, bundle.train_batch(PROMPTS, RESPONSES, images), steps=2)  # not just the initialisation
    bundle.save(tmp_path)
    loaded = build_model(str(tmp_path))
    assert loaded.spec == str(tmp_path)
    assert (loaded.family, loaded.image_size, loaded.patch_size) == (family, bundle.image_size, bundle.patch_size)
    assert type(loaded.model) is type(bundle.model)
    assert isinstance(loaded.processor, type(bundle.processor))
    batch, loaded_batch = (b.train_batch(PROMPTS, RESPONSES, images) for b in (bundle, loaded))
    assert batch.keys() == loaded_batch.keys()
    assert all(torch.equal(batch[key], loaded_batch[key]) for key in batch)  # same tokens, same pixels
    assert torch.equal(_logits(bundle, batch), _logits(loaded, loaded_batch))
    assert loaded.generate(PROMPTS, images, max_new_tokens=4) == bundle.generate(PROMPTS, images, max_new_tokens=4)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_bundle_saves_merged_and_keeps_its_adapters(family, tmp_path):
    bundle = tiny(family, lora=True, lora_rank=4)
    images = make_images(4)
    batch = bundle.train_batch(PROMPTS, RESPONSES, images)
    train_steps(bundle, batch, steps=2, lr=1e-2)
    bundle.save(tmp_path)
    assert hasattr(bundle.model, "get_base_model")  # the bundle itself is still peft-wrapped
    loaded = build_model(str(tmp_path))
    assert not any("lora_" in name for name, _ in loaded.model.named_parameters())
    torch.testing.assert_close(_logits(loaded, batch), _logits(bundle, batch), rtol=1e-4, atol=1e-4)
    assert loaded.generate(PROMPTS, images, max_new_tokens=4) == bundle.generate(PROMPTS, images, max_new_tokens=4)


def test_checkpoint_keeps_its_image_size_and_resizes_other_images(tmp_path):
    tiny("llava").save(tmp_path)  # a 32 px model
    loaded = build_model(str(tmp_path), image_size=64)
    assert loaded.image_size == 32  # the trained size, for callers to check their data against
    batch = loaded.train_batch(PROMPTS[:2], RESPONSES[:2], make_images(2, size=64))
    assert tuple(batch["pixel_values"].shape) == (2, 3, 32, 32)  # resized to what the processor expects
    assert int((batch["input_ids"] == loaded.model.config.image_token_id).sum()) == 2 * 16


def test_loading_with_options_applies_them(tmp_path):
    tiny("qwen2_5_vl").save(tmp_path)
    loaded = build_model(str(tmp_path), options=ModelOptions(lora=True, freeze_vision=True, dtype="bfloat16"))
    base = loaded.model.get_base_model()
    assert base.dtype == torch.bfloat16
    assert not any(p.requires_grad for n, p in base.named_parameters() if n.startswith("model.visual.blocks."))


def test_recommended_learning_rates_for_presets_and_checkpoints(tmp_path):
    # train.lr=0 means these: from-scratch presets by family; pretrained checkpoints the usual fine-tuning rates.
    assert [tiny(family).recommended_lr for family in ("llava", "blip2", "qwen2_5_vl")] == [1e-3, 1e-3, 5e-4]
    tiny("llava").save(tmp_path)
    assert build_model(str(tmp_path)).recommended_lr == 2e-5
    assert build_model(str(tmp_path), options=ModelOptions(lora=True)).recommended_lr == 2e-4
