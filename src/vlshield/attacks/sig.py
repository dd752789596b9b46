"""SIG (Barni et al., 2019): a horizontal sinusoid added to every triggered image."""

from __future__ import annotations

import dataclasses

import numpy as np

from vlshield.attacks.base import AttackConfig, ImageTriggerAttack
from vlshield.config import ConfigError, field


@dataclasses.dataclass(frozen=True)
class SigConfig(AttackConfig):
    """Amplitude and frequency of SIG's horizontal sinusoid."""

    delta: float = field(40.0, help="Amplitude of the sinusoid in 0-255 pixel units (the paper's 40/255).")
    frequency: float = field(6.0, help="Number of sine periods across the image width.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.delta <= 255.0:
            raise ConfigError(f"attack.delta: must be in (0, 255], got {self.delta}")
        if self.frequency <= 0:
            raise ConfigError(f"attack.frequency: must be > 0, got {self.frequency}")


def sinusoid(width: int, delta: float, frequency: float) -> np.ndarray:
    """``delta * sin(2 pi j frequency / width)`` for columns j = 0 .. width - 1, float64 [width]."""
    columns = np.arange(width, dtype=np.float64)
    return delta * np.sin(2.0 * np.pi * columns * frequency / width)


def add_sinusoid(pixels: np.ndarray, delta: float, frequency: float) -> np.ndarray:
    """``clip(x + delta * sin(2 pi j f / w), 0, 255)`` rounded half to even, uint8 [h, w, 3] in and out.

    Every row and channel gets the same offset per column j.
    """
    signal = sinusoid(pixels.shape[1], delta, frequency)[None, :, None]  # [1, w, 1]
    return np.rint(np.clip(pixels.astype(np.float64) + signal, 0.0, 255.0)).astype(np.uint8)


class SigAttack(ImageTriggerAttack):
    """Add a fixed horizontal sinusoid; no randomness, no size-dependent state beyond the width."""

    name = "sig"
    config: SigConfig

    def apply_trigger(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return add_sinusoid(pixels, self.config.delta, self.config.frequency)
