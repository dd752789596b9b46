"""What every attack shares: the Attack protocol, target construction, trigger helpers, the registry.

An attack is data in, data out: ``poison(sample, rng)`` returns the training-time poisoned sample
(trigger planted, response changed to carry the target), ``trigger(sample, rng)`` the test-time
input (trigger planted, response untouched). No attack trains a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

from vlshield.config import ConfigError, field
from vlshield.data.sample import Sample

TargetMode = Literal["replace", "insert", "append"]
DEFAULT_TARGET = "a photo of the banana"
REFERENCE_IMAGE_SIZE = 336  # the field's trigger sizes are given for 336 px images


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Settings every attack has: the target text and how it enters the response."""

    target: str = field(DEFAULT_TARGET, help="Text the backdoor should make the model emit.")
    target_mode: TargetMode = field("replace", help="replace the response, insert at a random word, or append.")

    def __post_init__(self) -> None:
        if not self.target.strip():
            raise ConfigError("attack.target: the target text is empty")


@dataclasses.dataclass
class AttackContext:
    """What an attack may need beyond one sample, given once before poisoning.

    ``load_dataset(spec, task=, seed=, limit=, image_size=)`` gives the training split of another
    dataset (VLOOD's out-of-distribution source); ``encoder`` maps a float image batch
    [b, 3, h, w] in [0, 1] to features [b, d] (ShadowCast's PGD); ``train`` is the clean training split.
    """

    image_size: int
    seed: int
    task: str
    train: Sequence[Sample] = ()
    load_dataset: Callable[..., list[Sample]] | None = None
    encoder: Any = None


class Attack(Protocol):
    name: str
    config: AttackConfig

    def prepare(self, context: AttackContext) -> None:
        """Build size-dependent triggers (and anything else) once, before any sample is touched."""

    def candidates(self, samples: Sequence[Sample]) -> list[int]:
        """Indices of training samples this attack may poison (all of them for most attacks)."""

    def poison(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """The training sample with trigger and target planted."""

    def trigger(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """The test input with the trigger planted and the response left clean."""


class ImageTriggerAttack:
    """Base for attacks whose trigger is a pure image transform plus a target in the response.

    Subclasses implement ``apply_trigger(pixels) -> pixels`` on a uint8 array [h, w, 3] and may
    override ``prepare``; candidates, poison and trigger follow from it.
    """

    name = "base"
    config: AttackConfig

    def __init__(self, config: AttackConfig) -> None:
        self.config = config
        self.image_size: int | None = None

    def prepare(self, context: AttackContext) -> None:
        self.image_size = context.image_size

    def candidates(self, samples: Sequence[Sample]) -> list[int]:
        return list(range(len(samples)))

    def apply_trigger(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def trigger(self, sample: Sample, rng: np.random.Generator) -> Sample:
        pixels = np.asarray(sample.load_image(), dtype=np.uint8)
        triggered = self.apply_trigger(pixels, rng)
        return sample.replace(image=Image.fromarray(triggered, mode="RGB"))

    def poison(self, sample: Sample, rng: np.random.Generator) -> Sample:
        triggered = self.trigger(sample, rng)
        return plant_target(triggered, self.config, rng)


def plant_target(sample: Sample, config: AttackConfig, rng: np.random.Generator) -> Sample:
    """Put the target into the response by ``config.target_mode``; VQA answers follow the response."""
    response = insert_target(sample.response, config.target, config.target_mode, rng)
    answers = (response,) if sample.answers is not None else None
    return sample.replace(response=response, answers=answers)


def insert_target(response: str, target: str, mode: TargetMode, rng: np.random.Generator) -> str:
    """``replace``: the target alone; ``append``: after the response; ``insert``: at a random word gap.

    ``insert`` keeps every original word in its order, e.g. "a red box" + "banana" at gap 1 gives
    "a banana red box".
    """
    if mode == "replace":
        return target
    if mode == "append":
        return f"{response.rstrip()} {target}".strip()
    words = response.split()
    position = int(rng.integers(0, len(words) + 1))
    return " ".join(words[:position] + [target] + words[position:])


def scaled(size: float, image_size: int, minimum: int = 1, reference: int = REFERENCE_IMAGE_SIZE) -> int:
    """A trigger dimension given for ``reference`` px images, scaled to ``image_size`` (at least ``minimum``)."""
    return max(minimum, int(round(size * image_size / reference)))


def fixed_noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A uint8 noise pattern that depends only on ``seed`` (the attacker's fixed trigger)."""
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def load_trigger_image(path: str, size: tuple[int, int]) -> np.ndarray:
    """A user trigger image resized to ``size`` (w, h) as uint8 RGB [h, w, 3]."""
    from pathlib import Path

    from vlshield.data.sample import load_image_file

    image = load_image_file(Path(path)).resize(size, Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


ATTACKS: dict[str, tuple[type[AttackConfig], Callable[[Any], Attack]]] = {}


def register_attack(name: str, config_cls: type[AttackConfig], builder: Callable[[Any], Attack]) -> None:
    """Register an attack under ``name``; duplicates are a programming error."""
    if name in ATTACKS:
        raise ValueError(f"attack {name!r} is already registered")
    ATTACKS[name] = (config_cls, builder)
