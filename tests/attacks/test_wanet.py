import numpy as np
import pytest
import torch

from vlshield.attacks.base import AttackContext
from vlshield.attacks.wanet import WaNetAttack, WaNetConfig, identity_grid, pixel_shift, warp, warp_grid
from vlshield.config import ConfigError

from .attack_helpers import make_sample, pixels_of, shapes_pixels


def default_shift(size: int) -> torch.Tensor:
    return pixel_shift(warp_grid(size, size, grid_size=4, strength=0.5, seed=1234))  # [h, w, 2]


def test_identity_grid_leaves_the_image_unchanged():
    pixels = shapes_pixels(0)
    assert np.array_equal(warp(pixels, identity_grid(64, 64)), pixels)


@pytest.mark.parametrize("size", [64, 336])
def test_displacement_is_a_fraction_of_a_pixel_at_every_size(size):
    # shift = s/2 * field * (w-1)/h, with the field normalised to mean |value| 1: about half a pixel at s = 0.5
    largest = default_shift(size).abs().max().item()
    assert 0.2 < largest < 1.0


def test_displacement_scales_with_strength():
    weak = pixel_shift(warp_grid(64, 64, 4, 0.5, 1234)).abs().max().item()
    strong = pixel_shift(warp_grid(64, 64, 4, 1.0, 1234)).abs().max().item()
    assert strong == pytest.approx(2 * weak, rel=1e-4)


def test_field_is_smooth():
    # The outermost rows and columns are left out: clamping to [-1, 1] zeroes outward shifts there.
    shift = default_shift(64)[1:-1, 1:-1]
    assert (shift[1:] - shift[:-1]).abs().max() < 0.1  # neighbouring rows, in pixels
    assert (shift[:, 1:] - shift[:, :-1]).abs().max() < 0.1  # neighbouring columns


def test_a_horizontal_ramp_moves_by_at_most_its_slope_times_the_shift():
    ramp = np.broadcast_to((3 * np.arange(64, dtype=np.uint8))[None, :, None], (64, 64, 3)).copy()
    warped = warp(ramp, warp_grid(64, 64, 4, 0.5, 1234))
    largest_dx = default_shift(64)[..., 0].abs().max().item()
    # bilinear sampling of a linear ramp is exact, so only the shift and the final rounding move it
    assert np.abs(warped.astype(float) - ramp).max() <= 3 * largest_dx + 0.5


def test_trigger_is_subtle_but_not_a_no_op(context):
    attack = WaNetAttack(WaNetConfig())
    attack.prepare(context)
    for seed in range(3):
        clean = shapes_pixels(seed)
        triggered = pixels_of(attack.trigger(make_sample(clean), np.random.default_rng(0)))
        mse = np.mean((triggered.astype(np.float64) - clean) ** 2)
        assert mse > 0
        assert 10 * np.log10(255**2 / mse) > 25  # PSNR in dB


def test_pattern_seed_fixes_the_field():
    assert torch.equal(warp_grid(64, 64, 4, 0.5, 1), warp_grid(64, 64, 4, 0.5, 1))
    assert not torch.equal(warp_grid(64, 64, 4, 0.5, 1), warp_grid(64, 64, 4, 0.5, 2))


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="attack.grid_size"):
        WaNetConfig(grid_size=1)
    with pytest.raises(ConfigError, match="attack.strength"):
        WaNetConfig(strength=0)
    with pytest.raises(ConfigError, match="attack.grid_size.*8 px"):
        WaNetAttack(WaNetConfig(grid_size=10)).prepare(AttackContext(image_size=8, seed=0, task="caption"))
