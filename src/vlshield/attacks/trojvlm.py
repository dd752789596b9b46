"""TrojVLM (Lyu et al., 2024): a small noise patch, with the target inserted into the true answer.

The trigger is BadNet's patch at TrojVLM's smaller size (20 px on BLIP-2's 224 px input); the poisoned response
keeps every word of the clean answer and gains the target at a random word position, so the
model learns to say the target while still describing the image.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from vlshield.attacks.badnet import BadNetAttack, BadNetConfig
from vlshield.attacks.base import TargetMode
from vlshield.config import field


@dataclasses.dataclass(frozen=True)
class TrojVLMConfig(BadNetConfig):
    """BadNet's patch settings with TrojVLM's 20 px default and target insertion."""

    reference_patch_size: ClassVar[int] = 20
    reference_image_size: ClassVar[int] = 224  # TrojVLM attacks BLIP-2 / InstructBLIP at 224 px

    target_mode: TargetMode = field("insert", help="insert the target at a random word (TrojVLM), replace, or append.")
    patch_size: int = field(0, help="Patch side in pixels; 0 scales TrojVLM's 20 px at 224 px to the image.")


class TrojVLMAttack(BadNetAttack):
    """BadNet's patch stamping with TrojVLM's patch size and target insertion (all from the config)."""

    name = "trojvlm"
    config: TrojVLMConfig
