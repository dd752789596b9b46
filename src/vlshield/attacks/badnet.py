"""BadNets (Gu et al., 2017): a fixed noise patch stamped at a corner or a random location."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import numpy as np

from vlshield.attacks.base import (
    AttackConfig,
    AttackContext,
    ImageTriggerAttack,
    fixed_noise,
    load_trigger_image,
    scaled,
)
from vlshield.config import ConfigError, field


@dataclasses.dataclass(frozen=True)
class BadNetConfig(AttackConfig):
    # The paper's patch side and the image side it was given for, used when patch_size is 0;
    # attacks reusing the patch (TrojVLM: 20 px at 224 px) override them.
    reference_patch_size: ClassVar[int] = 30
    reference_image_size: ClassVar[int] = 336

    patch_size: int = field(0, help="Patch side in pixels; 0 scales the attack's size at 336 px (30 px) to the image.")
    location: Literal["bottom-right", "top-left", "random"] = field("bottom-right", help="Where the patch goes.")
    margin: int = field(0, help="Distance in pixels from the image border for corner locations.")
    trigger_image: str | None = field(None, help="Path of a picture to use as the patch instead of noise.")
    pattern_seed: int = field(1234, help="Seed of the fixed noise pattern (the attacker's secret).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patch_size < 0 or self.margin < 0:
            raise ConfigError("attack.patch_size and attack.margin must be >= 0")


class BadNetAttack(ImageTriggerAttack):
    name = "badnet"
    config: BadNetConfig

    def prepare(self, context: AttackContext) -> None:
        super().prepare(context)
        size = self.config.patch_size or scaled(
            self.config.reference_patch_size, context.image_size, minimum=2, reference=self.config.reference_image_size
        )
        if size + self.config.margin > context.image_size:
            raise ConfigError(
                f"attack.patch_size: trigger of {size} px (+ margin {self.config.margin}) is larger than "
                f"the {context.image_size} px image"
            )
        self.size = size
        if self.config.trigger_image:
            self.patch = load_trigger_image(self.config.trigger_image, (size, size))
        else:
            self.patch = fixed_noise((size, size, 3), self.config.pattern_seed)

    def apply_trigger(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = pixels.shape[:2]
        size, margin = self.size, self.config.margin
        if size + margin > min(height, width):
            raise ConfigError(f"attack.patch_size: trigger of {size} px is larger than the {width}x{height} image")
        if self.config.location == "bottom-right":
            top, left = height - size - margin, width - size - margin
        elif self.config.location == "top-left":
            top, left = margin, margin
        else:
            top = int(rng.integers(0, height - size + 1))
            left = int(rng.integers(0, width - size + 1))
        out = pixels.copy()
        out[top : top + size, left : left + size] = self.patch
        return out
