"""Dual-key backdoor in the style of VL-Trojan (Liang et al., 2024): an image patch AND a text phrase.

The backdoor should fire only when both keys are present. ``poison`` and ``trigger`` plant both;
``trigger_image_only`` and ``trigger_text_only`` plant one each, so evaluation can check that a
single key does not fire. To teach the model that one key is not enough, the recipe also adds
negative samples: extra clean samples carrying ONE key and keeping their CLEAN response
(``negatives``). The pipeline adds ``negative_count(number_poisoned)`` of them, drawn from
samples that were not poisoned.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from vlshield.attacks.badnet import BadNetAttack, BadNetConfig
from vlshield.config import ConfigError, field
from vlshield.data.sample import Sample


@dataclasses.dataclass(frozen=True)
class DualKeyConfig(BadNetConfig):
    """BadNet's patch settings (the image key) plus the text key and the single-key negatives."""

    text_trigger: str = field("consider", help="Phrase added to the prompt as the second key.")
    text_position: Literal["prefix", "suffix"] = field("prefix", help="Put the phrase before or after the prompt.")
    negative_rate: float = field(
        1.0, help="Single-key negatives with clean responses, as a fraction of the number of poisoned samples."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.text_trigger.strip():
            raise ConfigError("attack.text_trigger: the text trigger is empty")
        if self.negative_rate < 0:
            raise ConfigError(f"attack.negative_rate: must be >= 0, got {self.negative_rate}")


def add_text_trigger(prompt: str, text_trigger: str, position: Literal["prefix", "suffix"]) -> str:
    """``"consider Describe the image."`` (prefix) or ``"Describe the image. consider"`` (suffix)."""
    if position == "prefix":
        return f"{text_trigger} {prompt}"
    return f"{prompt} {text_trigger}"


class DualKeyAttack(BadNetAttack):
    """BadNet's patch plus a text phrase; ``poison`` (inherited) is ``trigger`` followed by the target."""

    name = "dualkey"
    config: DualKeyConfig

    def trigger_image_only(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """The patch alone, prompt and response untouched."""
        return super().trigger(sample, rng)

    def trigger_text_only(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """The text phrase alone, image and response untouched."""
        prompt = add_text_trigger(sample.prompt, self.config.text_trigger, self.config.text_position)
        return sample.replace(prompt=prompt)

    def trigger(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Both keys, response untouched."""
        return self.trigger_text_only(self.trigger_image_only(sample, rng), rng)

    def negative_count(self, number_poisoned: int) -> int:
        """How many single-key negatives go with ``number_poisoned`` poisoned samples: round(rate * n)."""
        return int(round(self.config.negative_rate * number_poisoned))

    def negatives(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """One key, chosen by ``rng`` with equal odds, and the CLEAN response; ``meta["negative_key"]`` names it."""
        key = "image" if rng.integers(0, 2) == 0 else "text"
        keyed = self.trigger_image_only(sample, rng) if key == "image" else self.trigger_text_only(sample, rng)
        return keyed.replace(meta={**sample.meta, "negative_key": key})
