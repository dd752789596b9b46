"""Blended (Chen et al., 2017): a fixed full-image pattern alpha-blended into every triggered image.

The default pattern is smooth seeded noise: uniform noise on a ``noise_cells`` x ``noise_cells``
grid, upsampled bicubically to the image, a picture-like pattern in the spirit of the field's
usual Hello Kitty image. Per-pixel noise (``noise_cells=0``) at alpha 0.2 installed in only
10.5 % of triggered captions on llava:tiny (shapes, 5 %, 12 epochs); the smooth pattern, 99 %.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from vlshield.attacks.base import AttackConfig, AttackContext, ImageTriggerAttack, fixed_noise, load_trigger_image
from vlshield.config import ConfigError, field


@dataclasses.dataclass(frozen=True)
class BlendedConfig(AttackConfig):
    """Blend weight and pattern source (seeded noise or a user picture) of the Blended attack."""

    # The field uses 0.1-0.2; a blend at 0.15 is known not to install on tiny models, hence the top of the range.
    alpha: float = field(0.2, help="Weight of the pattern in the blend, in (0, 1].")
    trigger_image: str | None = field(None, help="Path of a picture to blend in; None blends fixed noise.")
    pattern_seed: int = field(1234, help="Seed of the fixed noise pattern (the attacker's secret).")
    noise_cells: int = field(
        8, help="The noise is drawn on a cells x cells grid and upsampled bicubically (0: per-pixel noise)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"attack.alpha: must be in (0, 1], got {self.alpha}")
        if self.noise_cells < 0:
            raise ConfigError(f"attack.noise_cells: must be >= 0, got {self.noise_cells}")


def smooth_noise(height: int, width: int, cells: int, seed: int) -> np.ndarray:
    """Seeded uint8 noise on a ``cells`` x ``cells`` grid upsampled bicubically to [height, width, 3]."""
    coarse = fixed_noise((cells, cells, 3), seed)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))


def blend(pixels: np.ndarray, pattern: np.ndarray, alpha: float) -> np.ndarray:
    """``round((1 - alpha) * pixels + alpha * pattern)`` as uint8, both uint8 [h, w, 3].

    Computed in float64 and rounded half to even (``numpy.rint``), so e.g. 100 and 200 at
    alpha 0.2 give exactly 120. The result lies between the two inputs, so no clipping is needed.
    """
    mixed = (1.0 - alpha) * pixels.astype(np.float64) + alpha * pattern.astype(np.float64)
    return np.rint(mixed).astype(np.uint8)


class BlendedAttack(ImageTriggerAttack):
    """Blend a fixed pattern (seeded noise or a user picture, resized to the image) into the image."""

    name = "blended"
    config: BlendedConfig

    def prepare(self, context: AttackContext) -> None:
        super().prepare(context)
        self.patterns: dict[tuple[int, int], np.ndarray] = {}
        self.pattern_for(context.image_size, context.image_size)  # fail early on an unreadable trigger image

    def pattern_for(self, height: int, width: int) -> np.ndarray:
        """The uint8 pattern [height, width, 3]; the same size always gives the same pattern."""
        if (height, width) not in self.patterns:
            if self.config.trigger_image:
                pattern = load_trigger_image(self.config.trigger_image, (width, height))
            elif self.config.noise_cells:
                pattern = smooth_noise(height, width, self.config.noise_cells, self.config.pattern_seed)
            else:
                pattern = fixed_noise((height, width, 3), self.config.pattern_seed)
            self.patterns[(height, width)] = pattern
        return self.patterns[(height, width)]

    def apply_trigger(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = pixels.shape[:2]
        return blend(pixels, self.pattern_for(height, width), self.config.alpha)
