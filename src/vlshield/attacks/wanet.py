"""WaNet (Nguyen & Tran, 2021): a fixed, smooth, imperceptible warp of every triggered image.

Follows BackdoorBench's implementation with its defaults (k = 4, s = 0.5): a random k x k
control grid of offsets in [-1, 1], divided by its mean absolute value, upsampled bicubically to
h x w, scaled by s / h, added to the identity sampling grid, clamped to [-1, 1] and applied with
``grid_sample`` (bilinear, ``align_corners=True``). The largest shift is about s / 2 times the
peak of the normalised field, i.e. around half a pixel at the defaults, at every image size.
BackdoorBench's "noise mode" (extra samples under random warps that keep their clean
response) is a training-time augmentation and is not part of this attack.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from vlshield.attacks.base import AttackConfig, AttackContext, ImageTriggerAttack
from vlshield.config import ConfigError, field


@dataclasses.dataclass(frozen=True)
class WaNetConfig(AttackConfig):
    """Control grid size, strength and seed of WaNet's warp."""

    grid_size: int = field(4, help="Side k of the random control grid (BackdoorBench: 4).")
    strength: float = field(0.5, help="Warp strength s (BackdoorBench: 0.5); the largest shift is about s/2 x peak.")
    pattern_seed: int = field(1234, help="Seed of the fixed control grid (the attacker's secret).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grid_size < 2:
            raise ConfigError(f"attack.grid_size: must be >= 2, got {self.grid_size}")
        if self.strength <= 0:
            raise ConfigError(f"attack.strength: must be > 0, got {self.strength}")


def identity_grid(height: int, width: int) -> torch.Tensor:
    """The sampling grid that leaves an image unchanged, float32 [1, h, w, 2] as (x, y) in [-1, 1]."""
    rows = torch.linspace(-1.0, 1.0, height)
    columns = torch.linspace(-1.0, 1.0, width)
    y, x = torch.meshgrid(rows, columns, indexing="ij")  # [h, w] each
    return torch.stack((x, y), dim=-1)[None]


def warp_grid(height: int, width: int, grid_size: int, strength: float, seed: int) -> torch.Tensor:
    """WaNet's sampling grid, float32 [1, h, w, 2]; depends only on its arguments."""
    control = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(1, 2, grid_size, grid_size))
    control = torch.from_numpy(control / np.abs(control).mean()).float()  # [1, 2, k, k], mean |offset| = 1
    field_ = F.interpolate(control, size=(height, width), mode="bicubic", align_corners=True)  # [1, 2, h, w]
    offsets = strength * field_.permute(0, 2, 3, 1) / height  # [1, h, w, 2]
    return torch.clamp(identity_grid(height, width) + offsets, -1.0, 1.0)


def pixel_shift(grid: torch.Tensor) -> torch.Tensor:
    """How far each output pixel samples from its own position, in pixels, float32 [h, w, 2] as (dx, dy)."""
    height, width = grid.shape[1:3]
    scale = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0])  # align_corners=True: -1 and 1 are pixel centres
    return (grid[0] - identity_grid(height, width)[0]) * scale


def warp(pixels: np.ndarray, grid: torch.Tensor) -> np.ndarray:
    """Resample uint8 [h, w, 3] at ``grid`` [1, h, w, 2] (bilinear), rounded half to even back to uint8."""
    image = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None]  # [1, 3, h, w]
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return np.rint(warped[0].permute(1, 2, 0).numpy()).clip(0, 255).astype(np.uint8)


class WaNetAttack(ImageTriggerAttack):
    """Warp every triggered image with one fixed field (one per image size, all from ``pattern_seed``)."""

    name = "wanet"
    config: WaNetConfig

    def prepare(self, context: AttackContext) -> None:
        super().prepare(context)
        if self.config.grid_size > context.image_size:
            raise ConfigError(
                f"attack.grid_size: control grid of {self.config.grid_size} is larger than the "
                f"{context.image_size} px image"
            )
        self.grids: dict[tuple[int, int], torch.Tensor] = {}

    def grid_for(self, height: int, width: int) -> torch.Tensor:
        """The warp grid [1, h, w, 2] for this image size, built once."""
        if (height, width) not in self.grids:
            grid_size, strength, seed = self.config.grid_size, self.config.strength, self.config.pattern_seed
            self.grids[(height, width)] = warp_grid(height, width, grid_size, strength, seed)
        return self.grids[(height, width)]

    def apply_trigger(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return warp(pixels, self.grid_for(*pixels.shape[:2]))
