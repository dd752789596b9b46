import numpy as np
import pytest

from vlshield.attacks.badnet import BadNetAttack, BadNetConfig
from vlshield.attacks.base import AttackContext, fixed_noise
from vlshield.config import ConfigError

from .attack_helpers import make_sample, noise_pixels, pixels_of, save_solid_png, solid_pixels


def prepared(context: AttackContext, **settings) -> BadNetAttack:
    attack = BadNetAttack(BadNetConfig(**settings))
    attack.prepare(context)
    return attack


def test_default_patch_is_30_px_at_336_scaled_to_6_px_at_64(context):
    assert prepared(context).size == 6  # round(30 * 64 / 336) = round(5.71)
    assert prepared(AttackContext(image_size=336, seed=0, task="caption")).size == 30


def test_trigger_changes_only_the_bottom_right_patch(context):
    clean = noise_pixels(0)
    triggered = pixels_of(prepared(context).trigger(make_sample(clean), np.random.default_rng(0)))
    changed = np.any(triggered != clean, axis=2)
    outside_patch = np.ones_like(changed)
    outside_patch[-6:, -6:] = False
    assert not changed[outside_patch].any()
    assert np.array_equal(triggered[-6:, -6:], fixed_noise((6, 6, 3), 1234))


def test_margin_and_top_left_move_the_patch(context):
    clean = solid_pixels((0, 0, 0))
    attack = prepared(context, location="top-left", margin=2)
    triggered = pixels_of(attack.trigger(make_sample(clean), np.random.default_rng(0)))
    assert np.array_equal(triggered[2:8, 2:8], fixed_noise((6, 6, 3), 1234))
    triggered[2:8, 2:8] = 0
    assert not triggered.any()


def test_random_location_is_drawn_from_the_rng(context):
    attack = prepared(context, location="random", trigger_image=None)
    clean = solid_pixels((0, 0, 0))
    first = pixels_of(attack.trigger(make_sample(clean), np.random.default_rng(5)))
    again = pixels_of(attack.trigger(make_sample(clean), np.random.default_rng(5)))
    other = pixels_of(attack.trigger(make_sample(clean), np.random.default_rng(6)))
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


def test_user_trigger_image_lands_in_the_patch(context, tmp_path):
    path = save_solid_png(tmp_path / "trigger.png", (255, 0, 0), size=10)
    clean = solid_pixels((0, 0, 255))
    triggered = pixels_of(prepared(context, trigger_image=path).trigger(make_sample(clean), np.random.default_rng(0)))
    assert (triggered[-6:, -6:] == (255, 0, 0)).all()
    assert (triggered[:-6] == (0, 0, 255)).all() and (triggered[:, :-6] == (0, 0, 255)).all()


def test_poison_replaces_the_response_and_vqa_answers(context):
    sample = make_sample(noise_pixels(0), response="two", task="vqa", answers=("two", "2"))
    poisoned = prepared(context).poison(sample, np.random.default_rng(0))
    assert poisoned.response == "a photo of the banana"
    assert poisoned.answers == ("a photo of the banana",)
    assert poisoned.prompt == sample.prompt


def test_trigger_larger_than_the_image_is_a_config_error_naming_the_size(context):
    with pytest.raises(ConfigError, match="70 px.*64 px"):
        prepared(context, patch_size=70)


def test_negative_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="attack.patch_size"):
        BadNetConfig(patch_size=-1)
