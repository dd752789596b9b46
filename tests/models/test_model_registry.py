import json

import pytest
import torch
from transformers import LlamaConfig

from vlshield.config import ConfigError
from vlshield.models import MODEL_FAMILIES, PRESET_SIZES, PRESETS, build_model, register_model_family

from .model_helpers import FAMILIES, visual_tokens


def test_registry_lists_the_three_families_and_three_presets():
    assert tuple(MODEL_FAMILIES) == FAMILIES
    assert PRESETS == ("tiny", "small", "7b") == tuple(PRESET_SIZES)


def test_registering_a_family_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_model_family(MODEL_FAMILIES["llava"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("foo:tiny", "unknown model family 'foo'; valid: llava, qwen2_5_vl, blip2"),
        ("llava:huge", "unknown preset 'huge' for llava; valid: tiny, small, 7b"),
        ("llava", "lacks a preset; use llava:tiny or llava:small"),
        ("/no/such/checkpoint", "neither FAMILY:PRESET .* nor a hub name"),
        ("./relative/missing", "neither FAMILY:PRESET"),
    ],
)
def test_bad_specs_raise_config_error_listing_valid_choices(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_model(spec)


@pytest.mark.parametrize(
    ("spec", "image_size", "message"),
    [
        ("llava:tiny", 36, "image_size 36 .* multiple of the patch size 8"),
        ("blip2:tiny", 20, "image_size 20 .* multiple of the patch size 8"),
        ("qwen2_5_vl:tiny", 40, r"image_size 40 .* patch size x merge size = 8 x 2 = 16"),
    ],
)
def test_image_size_that_the_patch_grid_cannot_cover_is_rejected(spec, image_size, message):
    with pytest.raises(ConfigError, match=message):
        build_model(spec, image_size=image_size)


def test_a_directory_that_is_not_a_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a model checkpoint directory"):
        build_model(str(tmp_path))


def test_a_checkpoint_of_an_unsupported_model_type_is_a_config_error(tmp_path):
    LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, vocab_size=32).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"model_type 'llama' is not supported; supported: llava \(llava\)"):
        build_model(str(tmp_path))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("image_size", [32, 64, 96])
def test_any_divisible_image_size_builds_with_the_expected_visual_token_count(family, image_size):
    if family == "qwen2_5_vl" and image_size % 16:
        pytest.skip("qwen needs multiples of 16")
    bundle = build_model(f"{family}:tiny", image_size=image_size)
    assert (bundle.family, bundle.image_size, bundle.patch_size) == (family, image_size, 8)
    image_id = bundle.model.config.image_token_id
    inputs = bundle.generate_batch(["hi"], torch.zeros(1, 3, image_size, image_size))
    assert int((inputs["input_ids"] == image_id).sum()) == visual_tokens(family, image_size)


def test_presets_have_the_documented_sizes():
    tiny = build_model("llava:tiny")
    small = build_model("llava:small")
    assert tiny.model.config.text_config.hidden_size == 128 and tiny.model.config.text_config.num_hidden_layers == 2
    assert small.model.config.text_config.hidden_size == 256 and small.model.config.text_config.num_hidden_layers == 4
    assert tiny.model.config.vision_config.hidden_size == 64 and small.model.config.vision_config.hidden_size == 128
    count = lambda bundle: sum(p.numel() for p in bundle.model.parameters())  # noqa: E731
    assert 0.3e6 < count(tiny) < 1e6 and 2e6 < count(small) < 5e6


def test_the_7b_preset_has_llava_1_5_7b_parameter_count():
    # Built on the meta device: shapes only, no memory. llava-hf/llava-1.5-7b-hf has 7,063,427,072
    # parameters with a 32064-row vocabulary; the preset pads to Llama's 32000 rows, so it lacks
    # 64 rows of the embedding and of the LM head, 4096 wide each.
    with torch.device("meta"):
        bundle = build_model("llava:7b", texts=["a red square"], image_size=336)
    assert sum(p.numel() for p in bundle.model.parameters()) == 7_063_427_072 - 2 * 64 * 4096
    vision = bundle.model.config.vision_config
    assert (bundle.model.config.text_config.vocab_size, vision.image_size, vision.patch_size) == (32000, 336, 14)


def test_saved_info_file_records_family_size_patch_and_spec(tmp_path):
    build_model("blip2:tiny", image_size=32).save(tmp_path)
    info = json.loads((tmp_path / "vlshield_model.json").read_text())
    assert info == {"family": "blip2", "image_size": 32, "patch_size": 8, "spec": "blip2:tiny"}
