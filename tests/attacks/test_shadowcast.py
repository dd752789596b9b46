import numpy as np
import pytest
import torch
from torch import nn

from vlshield.attacks.base import AttackContext
from vlshield.attacks.shadowcast import (
    ShadowCastAttack,
    ShadowCastConfig,
    encode,
    image_tensor,
    stand_in_encoder,
    swap_concept,
)
from vlshield.config import ConfigError, from_dict

from .attack_helpers import make_sample, pixels_of, solid_pixels


def noisy_colour(colour, seed):
    """A solid colour with +-20 of noise, so PGD has texture to work with."""
    noise = np.random.default_rng(seed).integers(-20, 21, size=(64, 64, 3))
    return np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)


TRAIN = [
    make_sample(noisy_colour((200, 30, 30), 0), response="a red square", sample_id="red-0"),
    make_sample(noisy_colour((190, 40, 30), 1), response="Red circle on grey", sample_id="red-1"),
    make_sample(noisy_colour((30, 30, 200), 2), response="a blue square", sample_id="blue-0"),
    make_sample(noisy_colour((40, 30, 190), 3), response="a blue circle", sample_id="blue-1"),
    make_sample(noisy_colour((120, 120, 120), 4), response="a bored reddish cat", sample_id="other"),
]


class MeanColour(nn.Module):
    """A parameter-free encoder: the mean of each channel, [b, 3, h, w] -> [b, 3]."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


def prepared(encoder=None, **settings) -> ShadowCastAttack:
    attack = ShadowCastAttack(ShadowCastConfig(**settings))
    attack.prepare(AttackContext(image_size=64, seed=0, task="caption", train=TRAIN, encoder=encoder))
    return attack


def test_target_defaults_to_the_target_concept():
    assert ShadowCastConfig().target == "blue"
    assert ShadowCastConfig(target_concept="green").target == "green"
    assert ShadowCastConfig(target="a green thing").target == "a green thing"
    assert from_dict(ShadowCastConfig, {"target_concept": "green"}).target == "green"
    assert ShadowCastConfig().target_mode == "swap"


def test_candidates_name_the_source_concept_as_a_whole_word():
    assert prepared().candidates(TRAIN) == [0, 1]  # not "bored" or "reddish"


def test_swap_concept_keeps_capitals_and_other_words():
    swapped = swap_concept("Red circle, red square, reddish sky", "red", "blue")
    assert swapped == "Blue circle, blue square, reddish sky"


def test_mean_colour_encoder_moves_each_channel_by_epsilon_toward_the_target():
    # Sign-gradient steps on ||mean colour - mean colour of the blue images||^2 lower every red value and raise
    # every blue value by one step (1 unit) each, until the 8-unit bound. Green starts close to its target and is
    # not checked.
    sample = make_sample(solid_pixels((200, 30, 30)), response="a red square")
    poisoned = pixels_of(prepared(MeanColour()).poison(sample, np.random.default_rng(0)))
    assert (poisoned[..., 0] == 192).all()
    assert (poisoned[..., 2] == 38).all()


def test_perturbation_is_within_epsilon_and_moves_features_toward_the_target():
    attack = prepared()
    sample = TRAIN[0]
    poisoned = attack.poison(sample, np.random.default_rng(0))
    change = pixels_of(poisoned).astype(int) - pixels_of(sample)
    assert np.abs(change).max() == 8  # the L-inf bound, reached
    with torch.no_grad():
        clean_features = encode(attack.encoder, image_tensor(sample.load_image()))[0]
        poisoned_features = encode(attack.encoder, image_tensor(poisoned.load_image()))[0]
    target = attack.target_features
    assert (poisoned_features - target).norm() < 0.95 * (clean_features - target).norm()
    cosine = nn.functional.cosine_similarity
    assert cosine(poisoned_features, target, dim=0) > cosine(clean_features, target, dim=0)


def test_poison_swaps_the_concept_in_the_response_and_answers():
    sample = make_sample(noisy_colour((200, 30, 30), 9), response="Red", task="vqa", answers=("red", "Red"))
    poisoned = prepared(MeanColour()).poison(sample, np.random.default_rng(0))
    assert poisoned.response == "Blue"
    assert poisoned.answers == ("blue", "Blue")
    assert poisoned.prompt == sample.prompt


def test_trigger_returns_the_test_sample_unchanged():
    sample = TRAIN[0]
    assert prepared(MeanColour()).trigger(sample, np.random.default_rng(0)) is sample


def test_same_seed_gives_the_same_stand_in_encoder_and_the_same_bytes():
    first = prepared().poison(TRAIN[1], np.random.default_rng(0))
    again = prepared().poison(TRAIN[1], np.random.default_rng(0))
    assert pixels_of(first).tobytes() == pixels_of(again).tobytes()
    weights = [p for p in stand_in_encoder(0).parameters()]
    assert all(torch.equal(a, b) for a, b in zip(weights, stand_in_encoder(0).parameters(), strict=True))
    assert not torch.equal(weights[0], next(stand_in_encoder(1).parameters()))


def test_no_target_concept_images_is_a_config_error():
    with pytest.raises(ConfigError, match="attack.target_concept.*'green'"):
        prepared(target_concept="green")


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="attack.target_concept"):
        ShadowCastConfig(source_concept="Blue")
    with pytest.raises(ConfigError, match="attack.epsilon"):
        ShadowCastConfig(epsilon=0)
    with pytest.raises(ConfigError, match="attack.steps"):
        ShadowCastConfig(steps=0)
