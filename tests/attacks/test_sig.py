import math

import numpy as np
import pytest

from vlshield.attacks.sig import SigAttack, SigConfig
from vlshield.config import ConfigError

from .attack_helpers import make_sample, noise_pixels, pixels_of, solid_pixels


def triggered_pixels(context, pixels, **settings) -> np.ndarray:
    attack = SigAttack(SigConfig(**settings))
    attack.prepare(context)
    return pixels_of(attack.trigger(make_sample(pixels), np.random.default_rng(0)))


def test_flat_image_gets_the_sinusoid_column_by_column(context):
    triggered = triggered_pixels(context, solid_pixels((100, 100, 100)))
    expected_row = [round(100 + 40 * math.sin(2 * math.pi * j * 6 / 64)) for j in range(64)]
    assert triggered[0, :, 0].tolist() == expected_row
    assert triggered[0, 0, 0] == 100  # sin(0) = 0
    assert (triggered == triggered[:1, :, :1]).all()  # every row and channel is the same


def test_noise_image_follows_the_formula_exactly(context):
    clean = noise_pixels(3)
    signal = 40.0 * np.sin(2 * np.pi * np.arange(64) * 6 / 64)
    expected = np.rint(np.clip(clean.astype(np.float64) + signal[None, :, None], 0, 255)).astype(np.uint8)
    assert np.array_equal(triggered_pixels(context, clean), expected)


def test_values_are_clipped_to_the_pixel_range(context):
    bright = triggered_pixels(context, solid_pixels((250, 250, 250)))
    dark = triggered_pixels(context, solid_pixels((5, 5, 5)))
    assert bright.max() == 255 and bright.min() == 210
    assert dark.min() == 0 and dark.max() == 45


def test_poison_replaces_the_response(context):
    attack = SigAttack(SigConfig(target="hello world"))
    attack.prepare(context)
    assert attack.poison(make_sample(noise_pixels(0)), np.random.default_rng(0)).response == "hello world"


def test_bad_amplitude_or_frequency_is_a_config_error():
    with pytest.raises(ConfigError, match="attack.delta"):
        SigConfig(delta=0)
    with pytest.raises(ConfigError, match="attack.frequency"):
        SigConfig(frequency=-1)
