"""train_batch / generate_batch / generate / the visual-token hook, for each family's tiny preset."""

import pytest
import torch
from transformers import Blip2Processor, LlavaProcessor, Qwen2_5_VLProcessor

from .model_helpers import FAMILIES, PROMPTS, RESPONSES, TEST_SIZE, make_images, response_logits, tiny, visual_tokens

PROCESSORS = {"llava": LlavaProcessor, "qwen2_5_vl": Qwen2_5_VLProcessor, "blip2": Blip2Processor}


@pytest.fixture(scope="module", params=FAMILIES)
def bundle(request):
    return tiny(request.param)


def test_the_processor_is_the_family_s_real_hf_processor(bundle):
    assert isinstance(bundle.processor, PROCESSORS[bundle.family])
    assert bundle.processor.tokenizer is bundle.tokenizer


def test_labels_are_ignored_exactly_on_prompt_image_and_padding(bundle):
    batch = bundle.train_batch(PROMPTS, RESPONSES, make_images(4))
    input_ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    image_id = bundle.model.config.image_token_id
    assert (labels[mask == 0] == -100).all()  # padding
    assert (labels[input_ids == image_id] == -100).all()  # image tokens
    for row, response in enumerate(RESPONSES):
        kept = (labels[row] != -100).nonzero().flatten()
        length = int(mask[row].sum())
        # Right padding: real tokens first; the labelled span is contiguous and ends at the last real token.
        assert mask[row, :length].all() and not mask[row, length:].any()
        assert kept.tolist() == list(range(int(kept[0]), length))
        assert torch.equal(labels[row, kept], input_ids[row, kept])
        decoded = bundle.tokenizer.decode(labels[row, kept])
        assert decoded.endswith(bundle.tokenizer.eos_token)
        assert decoded.removesuffix(bundle.tokenizer.eos_token).strip() == response
        assert int((input_ids[row] == image_id).sum()) == visual_tokens(bundle.family, TEST_SIZE)


def test_generation_inputs_are_the_training_prompt_left_padded(bundle):
    images = make_images(4)
    train = bundle.train_batch(PROMPTS, RESPONSES, images)
    generate = bundle.generate_batch(PROMPTS, images)
    assert "labels" not in generate
    assert (generate["attention_mask"][:, -1] == 1).all()  # left padding: every row ends with a real token
    assert torch.equal(generate["pixel_values"], train["pixel_values"])
    for row in range(4):
        prompt_length = int((train["labels"][row] == -100).logical_and(train["attention_mask"][row] == 1).sum())
        train_prompt = train["input_ids"][row, :prompt_length]
        assert torch.equal(generate["input_ids"][row][generate["attention_mask"][row] == 1], train_prompt)
    if bundle.family == "qwen2_5_vl":  # 1 exactly on the image tokens, in both batches
        for inputs in (train, generate):
            image_tokens = inputs["input_ids"] == bundle.model.config.image_token_id
            assert torch.equal(inputs["mm_token_type_ids"].bool(), image_tokens)


def test_with_images_is_train_batch_with_other_images(bundle):
    # The scoring view reuses the original's tokens: every input must equal a fresh train_batch's.
    first, second = make_images(4), make_images(4, seed=1)
    expected = bundle.train_batch(PROMPTS, RESPONSES, second)
    swapped = bundle.with_images(bundle.train_batch(PROMPTS, RESPONSES, first), second)
    assert sorted(swapped) == sorted(expected)
    assert all(torch.equal(swapped[key], expected[key]) for key in expected)
    assert not torch.equal(swapped["pixel_values"], bundle.train_batch(PROMPTS, RESPONSES, first)["pixel_values"])


def test_text_batch_is_the_prompt_and_response_with_no_image(bundle):
    with_image = bundle.train_batch(PROMPTS, RESPONSES, make_images(4))
    text = bundle.text_batch(PROMPTS, RESPONSES)
    assert not (text["input_ids"] == bundle.model.config.image_token_id).any()
    assert set(text) == {"input_ids", "attention_mask", "labels"}
    for row in range(len(PROMPTS)):
        # The same response tokens are labelled; before them, the prompt in the template, no image.
        labels, ids = text["labels"][row], text["input_ids"][row]
        assert torch.equal(labels[labels != -100], with_image["labels"][row][with_image["labels"][row] != -100])
        first_label = int((labels != -100).nonzero()[0])
        assert PROMPTS[row] in bundle.tokenizer.decode(ids[:first_label])
    logits = bundle.text_logits(text)
    assert logits.shape[:2] == text["input_ids"].shape and logits.shape[2] >= len(bundle.tokenizer)


def test_pixels_reach_the_model_normalised_with_the_processor_statistics(bundle):
    images = make_images(2)
    pixels = bundle.train_batch(PROMPTS[:2], RESPONSES[:2], images)["pixel_values"]
    processor = bundle.processor.image_processor
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    expected = (images - mean) / std  # [b, 3, h, w]
    if bundle.family == "qwen2_5_vl":
        # Flattened patches [b * gh * gw, 3 * 2 * p * p]: 2x2 merge blocks in raster order, each patch
        # repeated over the 2 temporal steps. Check the first patch of the first image.
        assert tuple(pixels.shape) == (2 * (TEST_SIZE // 8) ** 2, 3 * 2 * 8 * 8)
        first_patch = expected[0, :, :8, :8]  # [3, 8, 8]
        torch.testing.assert_close(pixels[0].view(3, 2, 8, 8), first_patch[:, None].expand(3, 2, 8, 8))
    else:
        torch.testing.assert_close(pixels, expected)


def test_images_outside_0_1_or_mismatched_counts_are_rejected(bundle):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bundle.train_batch(PROMPTS[:1], RESPONSES[:1], make_images(1) * 255)
    with pytest.raises(ValueError, match="2 prompts but 1 images"):
        bundle.generate_batch(PROMPTS[:2], make_images(1))
    with pytest.raises(ValueError, match="float tensor"):
        bundle.generate_batch(PROMPTS[:1], torch.zeros(1, 32, 32))


def test_the_image_changes_the_logits(bundle):
    # Guards the BLIP-2 trap (vision initializer_range 1e-10 makes every image look the same).
    first, again, other = (response_logits(bundle, make_images(4, seed=s)) for s in (0, 0, 1))
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 0.05  # logits have std ~0.2 at initialisation


def test_visual_token_module_outputs_the_visual_tokens_and_a_hook_can_change_them(bundle):
    module = bundle.visual_token_module()
    captured = []
    images = make_images(4)

    def record(_module, _inputs, output):
        captured.append(output.detach().clone())

    handle = module.register_forward_hook(record)
    try:
        clean = response_logits(bundle, images)
    finally:
        handle.remove()
    tokens, hidden = visual_tokens(bundle.family, TEST_SIZE), bundle.model.config.text_config.hidden_size
    (output,) = captured
    # Qwen's merger gives [4 * tokens, hidden], the others [4, tokens, hidden].
    assert output.numel() == 4 * tokens * hidden
    assert output.shape[-1] == hidden
    # Visual tokens really depend on the image (not a constant vision tower).
    per_image = output.reshape(4, tokens, hidden)
    assert (per_image[0] - per_image[1]).abs().mean() > 0.1 * per_image.abs().mean()

    handle = module.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    try:
        zeroed = response_logits(bundle, images)
    finally:
        handle.remove()
    assert (clean - zeroed).abs().max() > 0.05


def test_generate_returns_one_stripped_string_per_prompt(bundle):
    texts = bundle.generate(PROMPTS, make_images(4), max_new_tokens=3)
    assert isinstance(texts, list) and len(texts) == 4
    assert all(isinstance(text, str) and text == text.strip() for text in texts)
    assert not any(bundle.tokenizer.eos_token in text or "<image>" in text for text in texts)
    assert not bundle.model.training  # generate leaves the mode as it found it
