import numpy as np
import pytest

from vlshield.attacks.base import fixed_noise
from vlshield.attacks.blended import BlendedAttack, BlendedConfig, blend, smooth_noise
from vlshield.config import ConfigError

from .attack_helpers import make_sample, noise_pixels, pixels_of, save_solid_png, solid_pixels


def prepared(context, **settings) -> BlendedAttack:
    attack = BlendedAttack(BlendedConfig(**settings))
    attack.prepare(context)
    return attack


def test_default_alpha_is_the_top_of_the_fields_range():
    assert BlendedConfig().alpha == 0.2


def test_noise_blend_follows_the_formula_exactly(context):
    clean = noise_pixels(0)
    triggered = pixels_of(prepared(context, noise_cells=0).trigger(make_sample(clean), np.random.default_rng(0)))
    pattern = fixed_noise((64, 64, 3), 1234)  # per-pixel full-image pattern from the default pattern_seed
    expected = np.rint(0.8 * clean.astype(np.float64) + 0.2 * pattern.astype(np.float64)).astype(np.uint8)
    assert np.array_equal(triggered, expected)


def test_default_pattern_is_smooth_noise_upsampled_from_an_8_by_8_grid(context):
    pattern = pixels_of(prepared(context, alpha=1.0).trigger(make_sample(solid_pixels((7, 7, 7))), None))
    assert np.array_equal(pattern, smooth_noise(64, 64, 8, 1234))
    coarse = fixed_noise((8, 8, 3), 1234)
    # Bicubic upsampling by 8 passes near each cell's centre value and varies slowly between cells:
    assert np.abs(pattern[4::8, 4::8].astype(int) - coarse.astype(int)).mean() < 40
    neighbours = np.abs(np.diff(pattern.astype(int), axis=1)).mean()
    assert neighbours < np.abs(np.diff(fixed_noise((64, 64, 3), 1234).astype(int), axis=1)).mean() / 4


def test_alpha_one_shows_the_pattern_itself(context):
    attack = prepared(context, alpha=1.0, noise_cells=0)
    triggered = pixels_of(attack.trigger(make_sample(solid_pixels((7, 7, 7))), np.random.default_rng(0)))
    assert np.array_equal(triggered, fixed_noise((64, 64, 3), 1234))


def test_user_trigger_image_is_blended_over_the_whole_image(context, tmp_path):
    path = save_solid_png(tmp_path / "pattern.png", (200, 200, 200), size=10)
    attack = prepared(context, trigger_image=path)
    triggered = pixels_of(attack.trigger(make_sample(solid_pixels((100, 0, 50))), np.random.default_rng(0)))
    # 0.8 * 100 + 0.2 * 200 = 120; 0.8 * 0 + 0.2 * 200 = 40; 0.8 * 50 + 0.2 * 200 = 80
    assert (triggered == (120, 40, 80)).all()


def test_rounding_is_half_to_even():
    # 0.5 * 1 + 0.5 * 2 = 1.5 -> 2 and 0.5 * 2 + 0.5 * 3 = 2.5 -> 2
    pixels = np.array([[[1, 2, 0]]], dtype=np.uint8)
    pattern = np.array([[[2, 3, 0]]], dtype=np.uint8)
    assert blend(pixels, pattern, 0.5).tolist() == [[[2, 2, 0]]]


def test_poison_replaces_the_response(context):
    poisoned = prepared(context).poison(make_sample(noise_pixels(1)), np.random.default_rng(0))
    assert poisoned.response == "a photo of the banana"


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_alpha_outside_zero_one_is_a_config_error(alpha):
    with pytest.raises(ConfigError, match="attack.alpha"):
        BlendedConfig(alpha=alpha)
