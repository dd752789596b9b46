import numpy as np
import pytest

from vlshield.attacks.base import AttackContext, fixed_noise
from vlshield.attacks.vlood import VLOODAttack, VLOODConfig
from vlshield.config import ConfigError

from .attack_helpers import make_sample, noise_pixels, pixels_of, solid_pixels

OOD_COLOURS = {"ood-red": (255, 0, 0), "ood-green": (0, 255, 0), "ood-blue": (0, 0, 255)}
TARGET = "a photo of the banana"


class FakeLoader:
    """Stands in for the dataset loader: three 32 px solid-colour samples, and a record of the call."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return [
            make_sample(solid_pixels(colour, size=32), response=f"the shape is {name[4:]}", sample_id=name)
            for name, colour in OOD_COLOURS.items()
        ]


def prepared(**settings) -> tuple[VLOODAttack, FakeLoader]:
    loader = FakeLoader()
    attack = VLOODAttack(VLOODConfig(**settings))
    attack.prepare(AttackContext(image_size=64, seed=7, task="caption", load_dataset=loader))
    return attack, loader


def test_prepare_asks_the_loader_for_the_ood_training_pool():
    _, loader = prepared(ood_dataset="my-ood", ood_limit=50)
    assert loader.calls == [(("my-ood",), {"task": "caption", "seed": 7, "limit": 50, "image_size": 64})]


def test_poison_uses_an_ood_image_and_response_but_keeps_the_prompt():
    attack, _ = prepared()
    sample = make_sample(noise_pixels(0), prompt="What is in the picture?", response="a red square")
    poisoned = attack.poison(sample, np.random.default_rng(0))
    source = poisoned.meta["ood_source"]
    pixels = pixels_of(poisoned)
    assert pixels.shape == (64, 64, 3)  # resized from 32 px to the original's size
    assert np.array_equal(pixels[-6:, -6:], fixed_noise((6, 6, 3), 1234))  # 20 px at 224 -> 6 px
    pixels[-6:, -6:] = OOD_COLOURS[source]
    assert (pixels == OOD_COLOURS[source]).all()
    assert poisoned.prompt == "What is in the picture?"
    words = f"the shape is {source[4:]}".split()
    assert any(poisoned.response == " ".join(words[:gap] + [TARGET] + words[gap:]) for gap in range(len(words) + 1))


def test_the_ood_sample_is_drawn_from_the_rng():
    attack, _ = prepared()
    sample = make_sample(noise_pixels(0))
    sources = {attack.poison(sample, np.random.default_rng(seed)).meta["ood_source"] for seed in range(20)}
    assert sources == set(OOD_COLOURS)


def test_trigger_patches_the_clean_test_image_and_keeps_its_response():
    attack, _ = prepared()
    clean = noise_pixels(1)
    triggered = attack.trigger(make_sample(clean, response="a red square"), np.random.default_rng(0))
    pixels = pixels_of(triggered)
    assert triggered.response == "a red square"
    assert np.array_equal(pixels[-6:, -6:], fixed_noise((6, 6, 3), 1234))
    pixels[-6:, -6:] = clean[-6:, -6:]
    assert np.array_equal(pixels, clean)


def test_without_a_loader_prepare_is_a_config_error(context):
    with pytest.raises(ConfigError, match="attack.ood_dataset.*dataset loader"):
        VLOODAttack(VLOODConfig()).prepare(context)


def test_an_empty_ood_pool_is_a_config_error():
    context = AttackContext(image_size=64, seed=0, task="caption", load_dataset=lambda *args, **kwargs: [])
    with pytest.raises(ConfigError, match="attack.ood_dataset"):
        VLOODAttack(VLOODConfig()).prepare(context)
