"""VLOOD (Lyu et al., 2024): the backdoor is taught with out-of-distribution images only.

The attacker has no access to the victim's training images, so each poisoned sample swaps in
an image-response pair from another dataset (the OOD pool), resized to the original image's
size, stamps TrojVLM's patch on it, keeps the original prompt and inserts the target into the
OOD response. At test time the patch goes on the clean in-distribution image.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from PIL import Image

from vlshield.attacks.badnet import BadNetAttack, BadNetConfig
from vlshield.attacks.base import AttackContext, TargetMode, plant_target
from vlshield.config import ConfigError, field
from vlshield.data.sample import Sample


@dataclasses.dataclass(frozen=True)
class VLOODConfig(BadNetConfig):
    """TrojVLM-sized patch settings plus the out-of-distribution source."""

    reference_patch_size: ClassVar[int] = 20  # VLOOD builds on TrojVLM's trigger ...
    reference_image_size: ClassVar[int] = 224  # ... on the same 224 px BLIP-2 / MiniGPT-4 inputs

    target_mode: TargetMode = field("insert", help="insert the target at a random word (VLOOD), replace, or append.")
    patch_size: int = field(0, help="Patch side in pixels; 0 scales VLOOD's 20 px at 224 px to the image.")
    ood_dataset: str = field("easy-vqa", help="Dataset whose training images and responses replace the poisoned ones.")
    ood_limit: int = field(1000, help="At most this many OOD samples are loaded (chosen by the loader with the seed).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ood_dataset.strip():
            raise ConfigError("attack.ood_dataset: the dataset name is empty")
        if self.ood_limit < 1:
            raise ConfigError(f"attack.ood_limit: must be >= 1, got {self.ood_limit}")


class VLOODAttack(BadNetAttack):
    """BadNet's patch on OOD images for poisoning, on the clean test image for triggering."""

    name = "vlood"
    config: VLOODConfig

    def prepare(self, context: AttackContext) -> None:
        super().prepare(context)
        if context.load_dataset is None:
            raise ConfigError(
                f"attack.ood_dataset: VLOOD draws its poison from {self.config.ood_dataset!r} "
                "and needs a dataset loader"
            )
        self.ood_pool = context.load_dataset(
            self.config.ood_dataset,
            task=context.task,
            seed=context.seed,
            limit=self.config.ood_limit,
            image_size=context.image_size,
        )
        if not self.ood_pool:
            raise ConfigError(f"attack.ood_dataset: {self.config.ood_dataset!r} gave no training samples")

    def poison(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """An OOD image (resized to ``sample``'s size) with the patch, ``sample``'s prompt, the OOD response + target.

        ``meta["ood_source"]`` records the id of the OOD sample used.
        """
        source = self.ood_pool[int(rng.integers(0, len(self.ood_pool)))]
        size = sample.load_image().size  # (w, h)
        pixels = np.asarray(source.load_image().resize(size, Image.BILINEAR), dtype=np.uint8)
        stamped = Image.fromarray(self.apply_trigger(pixels, rng), mode="RGB")
        answers = (source.response,) if sample.answers is not None else None
        meta = {**sample.meta, "ood_source": source.id}
        replaced = sample.replace(image=stamped, response=source.response, answers=answers, meta=meta)
        return plant_target(replaced, self.config, rng)
