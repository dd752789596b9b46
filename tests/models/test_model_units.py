import pytest
import torch

from vlshield.config import ConfigError, from_dict
from vlshield.models import ModelOptions
from vlshield.models.base import resize_and_crop
from vlshield.models.qwen2_5_vl import mrope_section
from vlshield.models.tokenizer import train_tokenizer

SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def test_defaults_match_the_documented_values():
    options = ModelOptions()
    assert (options.lora, options.lora_rank, options.lora_alpha, options.lora_dropout) == (False, 16, 32, 0.05)
    assert (options.freeze_vision, options.freeze_projector, options.gradient_checkpointing) == (False, False, False)
    assert options.dtype == "float32"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lora_rank": 0}, "lora_rank"),
        ({"lora_alpha": 0}, "lora_alpha"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_invalid_options_raise_config_error_naming_the_key(changes, message):
    with pytest.raises(ConfigError, match=message):
        ModelOptions(**changes)


def test_options_load_from_a_yaml_style_dict():
    options = from_dict(ModelOptions, {"lora": "true", "lora_rank": "8", "dtype": "bfloat16"})
    assert options == ModelOptions(lora=True, lora_rank=8, dtype="bfloat16")
    with pytest.raises(ConfigError, match="'float16' is not one of 'float32', 'bfloat16'"):
        from_dict(ModelOptions, {"dtype": "float16"})
    with pytest.raises(ConfigError, match="valid keys of ModelOptions: lora, lora_rank"):
        from_dict(ModelOptions, {"rank": 4})


def test_tokenizer_round_trips_any_text_and_fixes_special_ids():
    tokenizer = train_tokenizer(
        ["what color is the shape?", "red"],
        special_tokens=SPECIALS,
        extra_special_tokens={"image_token": "<image>"},
        vocab_size=300,
        add_bos_token=True,
    )
    # Special tokens take ids 0..4 in the order given, whatever the corpus.
    assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [
        0,
        1,
        2,
        3,
    ]
    assert tokenizer.convert_tokens_to_ids(tokenizer.image_token) == 4
    text = "Ünïcode and words never seen: zebra 42 🦓"
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids  # byte-level: no unknowns
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer("<image>", add_special_tokens=False).input_ids == [4]  # one token, never split


def test_tokenizer_training_is_deterministic_and_learns_the_corpus():
    texts = ["what color is the shape?"] * 5 + ["a photo of the banana"] * 5

    def train():
        return train_tokenizer(texts, special_tokens=SPECIALS, vocab_size=400, add_bos_token=False)

    first, second = train(), train()
    assert first.get_vocab() == second.get_vocab()
    # Frequent words become single tokens: far fewer tokens than bytes.
    assert len(first("what color is the shape?").input_ids) < len("what color is the shape?") / 3


@pytest.mark.parametrize(("head_dim", "expected"), [(128, [16, 24, 24]), (64, [8, 12, 12]), (32, [4, 6, 6])])
def test_mrope_section_splits_half_the_head_dim_like_qwen(head_dim, expected):
    assert mrope_section(head_dim) == expected and sum(expected) == head_dim // 2


def test_resize_and_crop_keeps_native_images_and_resizes_others_within_0_1():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert resize_and_crop(images, 32, 32) is images  # nothing to do: untouched, no rounding
    resized = resize_and_crop(images, 48, 40)
    assert tuple(resized.shape) == (2, 3, 40, 40)
    assert resized.min() >= 0 and resized.max() <= 1
    flat = torch.full((1, 3, 16, 16), 0.25)
    torch.testing.assert_close(resize_and_crop(flat, 64, 64), torch.full((1, 3, 64, 64), 0.25))
