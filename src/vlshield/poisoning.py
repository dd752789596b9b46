"""Build a poisoned dataset directory: the artifact every training run and defense consumes.

``DIR`` receives ``train.jsonl`` (poisoned; each line flagged ``poisoned`` for evaluation and
oracle baselines only), ``test_clean.jsonl``, ``test_triggered.jsonl`` (trigger planted on clean
test inputs, references kept clean), any extra test sets the attack defines (e.g. dual-key's
single-key sets), ``poison_index.json``, ``config.json`` and the images.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vlshield import __version__
from vlshield.attacks import build_attack
from vlshield.attacks.base import AttackContext
from vlshield.config import ConfigError, field, to_dict
from vlshield.data.manifest import write_manifest
from vlshield.data.registry import load_dataset, resize_square
from vlshield.data.sample import Sample, Task
from vlshield.storage import atomic_directory, atomic_write_json, run_info

# Streams of the seeded generator, so that adding a stage never shifts the random draws of another.
_SELECT_STREAM, _POISON_STREAM, _TRIGGER_STREAM, _NEGATIVE_STREAM = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class PoisonConfig:
    """What ``vlshield poison`` does: which data, which attack, how much."""

    dataset: str = field("shapes", help="Built-in dataset name or a path to a manifest / COCO / VQAv2 / LLaVA file.")
    task: Task = field("caption", help="caption or vqa.")
    attack: str = field("badnet", help="Attack registry name.")
    rate: float = field(0.05, help="Fraction of training samples poisoned, in (0, 1].")
    seed: int = field(0, help="Seeds the data, the choice of poisoned samples and the attack's randomness.")
    limit: int | None = field(2000, help="Number of training samples (None: all).")
    test_size: int = field(200, help="Number of test samples.")
    image_size: int = field(64, help="Square image side; built-ins render at it, file images are resized to it.")
    image_root: str | None = field(None, help="Where a file dataset's images live (default: beside the file).")
    annotations: str | None = field(None, help="VQAv2 annotations file (default: found beside the questions).")
    attack_options: dict[str, Any] = field(default_factory=dict, help="Overrides of the attack's config.")

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= 1.0:
            raise ConfigError(f"rate: poison rate {self.rate} is outside (0, 1]")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit: must be a positive number of samples, got {self.limit}")
        if self.test_size < 1:
            raise ConfigError(f"test_size: must be >= 1, got {self.test_size}")
        if self.image_size < 8:
            raise ConfigError(f"image_size: {self.image_size} px is too small (>= 8)")


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def choose_poison_indices(candidates: list[int], n_train: int, rate: float, seed: int) -> list[int]:
    """Exactly ``round(rate * n_train)`` indices drawn from ``candidates`` by a seeded generator, sorted."""
    count = int(round(rate * n_train))
    if count == 0:
        raise ConfigError(f"rate: {rate} of {n_train} training samples rounds to 0 poisoned samples")
    if count > len(candidates):
        raise ConfigError(
            f"rate: {count} poisoned samples needed but the attack can poison only {len(candidates)} of {n_train}"
        )
    chosen = _rng(seed, _SELECT_STREAM).choice(np.asarray(candidates), size=count, replace=False)
    return sorted(int(index) for index in chosen)


def _at_size(sample: Sample, size: int) -> Sample:
    """The sample with its image brought to ``size`` x ``size`` lazily (a no-op when it already is)."""

    def render() -> Any:
        image = sample.load_image()
        return image if image.size == (size, size) else resize_square(image, size)

    return sample.replace(image=render)


def _dataset_loader(config: PoisonConfig) -> Callable[..., list[Sample]]:
    """The loader attacks use for other datasets (VLOOD's out-of-distribution source): train split only."""

    def load(spec: str, task: str, seed: int, limit: int | None, image_size: int) -> list[Sample]:
        splits = load_dataset(spec, task, seed=seed, limit=limit, test_size=1, image_size=image_size)
        return [_at_size(sample, image_size) for sample in splits.train]

    return load


def poison_dataset(config: PoisonConfig, out: str | Path, overwrite: bool = False, progress: bool = True) -> Path:
    """Poison ``config.dataset`` with ``config.attack`` and write the dataset directory ``out``.

    Nothing appears at ``out`` unless every file was written (a failure leaves no half-written
    directory). The same config gives byte-identical files.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"--out: {out} already exists (remove it or pass --overwrite)")
    splits = load_dataset(
        config.dataset,
        config.task,
        seed=config.seed,
        limit=config.limit,
        test_size=config.test_size,
        image_size=config.image_size,
        image_root=config.image_root,
        annotations=config.annotations,
    )
    train = [_at_size(sample, config.image_size) for sample in splits.train]
    test = [_at_size(sample, config.image_size) for sample in splits.test]
    attack = build_attack(config.attack, config.attack_options)
    attack.prepare(
        AttackContext(
            image_size=config.image_size,
            seed=config.seed,
            task=config.task,
            train=train,
            load_dataset=_dataset_loader(config),
        )
    )
    poisoned = set(choose_poison_indices(attack.candidates(train), len(train), config.rate, config.seed))
    bar = tqdm(total=len(train), desc=f"poison {config.attack}", disable=not progress, unit="sample")
    poisoned_train = []
    for index, sample in enumerate(train):
        if index in poisoned:
            sample = attack.poison(sample, _rng(config.seed, _POISON_STREAM, index))
        poisoned_train.append(sample)
        bar.update()
    bar.close()
    negatives = _plant_negatives(attack, poisoned_train, poisoned, config.seed)
    test_sets = _test_sets(attack, test, config.seed)

    with atomic_directory(out, overwrite=overwrite) as tmp:
        flags = [index in poisoned for index in range(len(poisoned_train))]
        write_manifest(tmp / "train.jsonl", poisoned_train, image_dir="images/train", poisoned=flags)
        for name, samples in test_sets.items():
            write_manifest(tmp / f"{name}.jsonl", samples, image_dir=f"images/{name}")
        atomic_write_json(
            tmp / "poison_index.json",
            {
                "count": len(poisoned),
                "n_train": len(poisoned_train),
                "indices": sorted(poisoned),
                "ids": [poisoned_train[index].id for index in sorted(poisoned)],
                "negative_ids": [poisoned_train[index].id for index in negatives],
            },
        )
        atomic_write_json(
            tmp / "config.json",
            {
                "poison": to_dict(config),
                "attack": to_dict(attack.config),
                "target": attack.config.target,
                "seed": config.seed,
                "vlshield_version": __version__,
                **run_info(),
            },
        )
    return out


def _plant_negatives(attack: Any, train: list[Sample], poisoned: set[int], seed: int) -> list[int]:
    """Attacks with ``negatives`` (dual-key) also get clean-response samples carrying a single key.

    They teach the model that one key alone does not fire; they keep ``poisoned: false`` since
    their responses are clean. Returns their indices (changed in place in ``train``).
    """
    make_negative = getattr(attack, "negatives", None)
    count = int(round(getattr(attack.config, "negative_rate", 0.0) * len(poisoned)))
    if make_negative is None or count == 0:
        return []
    clean = np.asarray([index for index in range(len(train)) if index not in poisoned])
    chosen = sorted(
        int(i) for i in _rng(seed, _NEGATIVE_STREAM).choice(clean, size=min(count, len(clean)), replace=False)
    )
    for index in chosen:
        train[index] = make_negative(train[index], _rng(seed, _NEGATIVE_STREAM, index + 1))
    return chosen


def _test_sets(attack: Any, test: list[Sample], seed: int) -> dict[str, list[Sample]]:
    """``test_clean``, ``test_triggered`` and the attack's extra triggered sets (e.g. single-key)."""
    eligible = set(attack.candidates(test))
    sets: dict[str, list[Sample]] = {"test_clean": test}
    triggers = {"test_triggered": attack.trigger}
    for name, method in (("test_image_only", "trigger_image_only"), ("test_text_only", "trigger_text_only")):
        if hasattr(attack, method):
            triggers[name] = getattr(attack, method)
    for name, apply in triggers.items():
        sets[name] = [
            apply(sample, _rng(seed, _TRIGGER_STREAM, index)) for index, sample in enumerate(test) if index in eligible
        ]
    return sets


def read_dataset_config(data_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a poisoned dataset directory."""
    path = Path(data_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{data_dir}: not a poisoned dataset directory (no config.json)")
    return json.loads(path.read_text())
