"""The one entry point to data: ``load_dataset(spec, task)`` for built-ins and files alike.

``spec`` is a built-in name (``BUILTIN_DATASETS``) or a path to a JSONL manifest, a COCO
Karpathy JSON, VQAv2 questions or a LLaVA conversation JSON (``formats``). Built-ins render
their images at ``image_size`` (easy-vqa excepted: its images are the package's 64 px files);
file datasets keep their own images, and the pipeline brings them to size with ``resize_square``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from vlshield.data import easyvqa, shapes
from vlshield.data.formats import read_dataset_file
from vlshield.data.sample import TASKS, DataError, Sample

# Streams of the seeded generator, so that capping one split never shifts the draws of another.
_TRAIN_STREAM, _TEST_STREAM, _HOLDOUT_STREAM = 10, 11, 12
HOLDOUT_FRACTION = 0.1  # files without a test split hold out this fraction (at most test_size)


@dataclasses.dataclass(frozen=True)
class DatasetSplits:
    """Training and test samples; no image appears in both."""

    train: list[Sample]
    test: list[Sample]


class BuiltinBuilder(Protocol):
    def __call__(
        self, task: str, *, seed: int, train_size: int | None, test_size: int, image_size: int
    ) -> tuple[list[Sample], list[Sample]]:
        """(train, test) samples of ``task``; ``train_size`` None means the dataset's default size."""


BUILTIN_DATASETS: dict[str, BuiltinBuilder] = {
    "shapes": shapes.build_splits,
    "shapes-textured": functools.partial(shapes.build_splits, texture_fraction=0.5),
    "easy-vqa": easyvqa.build_splits,
}
# Built-ins that generate exactly the training size asked for (the registry then only shuffles):
# shapes VQA pairs each of its ``limit`` questions with the scene's description (an instruction mix).
GENERATED_BUILTINS = frozenset({"shapes", "shapes-textured"})


def load_dataset(
    spec: str,
    task: str,
    *,
    seed: int = 0,
    limit: int | None = None,
    test_size: int = 200,
    image_size: int = 64,
    image_root: str | None = None,
    annotations: str | None = None,
) -> DatasetSplits:
    """Train and test samples of ``spec`` for ``task`` ("caption" or "vqa").

    Args:
        spec: a ``BUILTIN_DATASETS`` name, or a path to a manifest (.jsonl) or a COCO Karpathy,
            VQAv2 questions or LLaVA JSON file.
        task: built-ins generate it; a file must hold samples of it (LLaVA files are read as it).
        seed: seeds generation, the shuffle before capping and the holdout of files without a test split.
        limit: the number of training samples: the first ``limit`` after a seeded shuffle (None: all;
            shapes then generates 2000). Shapes VQA counts questions: each comes with its scene's
            description, so its training split holds ``2 * limit`` samples.
        test_size: the most test samples (the first after a seeded shuffle).
        image_size: the side built-ins render at; file images keep their size (see ``resize_square``).
        image_root: where a JSON dataset's images live (default: the JSON's directory).
        annotations: the VQAv2 annotations file (default: found beside the questions).

    Splits: a file whose samples carry ``meta["split"]`` (Karpathy) with both sides uses it
    (train + restval -> train, test -> test, val unused). Any other file holds out
    ``min(test_size, 10 %)`` of its images (at least one), so that samples sharing an image stay
    on one side.
    """
    if task not in TASKS:
        raise DataError(f"unknown task {task!r} (valid: {', '.join(TASKS)})")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of training samples, got {limit}")
    if test_size < 0:
        raise DataError(f"test_size must be >= 0, got {test_size}")
    if spec in BUILTIN_DATASETS:
        build = BUILTIN_DATASETS[spec]
        train, test = build(task, seed=seed, train_size=limit, test_size=test_size, image_size=image_size)
    elif Path(spec).is_file():
        train, test = _file_splits(Path(spec), task, seed, test_size, image_root, annotations)
    else:
        raise DataError(
            f"unknown dataset {spec!r}: not a built-in ({', '.join(BUILTIN_DATASETS)}) nor an existing file"
        )
    return DatasetSplits(
        train=_seeded_prefix(train, None if spec in GENERATED_BUILTINS else limit, seed, _TRAIN_STREAM),
        test=_seeded_prefix(test, test_size, seed, _TEST_STREAM),
    )


def _seeded_prefix(samples: Sequence[Sample], count: int | None, seed: int, stream: int) -> list[Sample]:
    """The first ``count`` samples (all if None) of a seeded permutation."""
    order = np.random.default_rng([seed, stream]).permutation(len(samples))
    return [samples[int(index)] for index in order[:count]]


def _file_splits(
    path: Path, task: str, seed: int, test_size: int, image_root: str | None, annotations: str | None
) -> tuple[list[Sample], list[Sample]]:
    samples = read_dataset_file(path, task, image_root=image_root, annotations=annotations)
    matching = [sample for sample in samples if sample.task == task]
    if not matching:
        found = sorted({sample.task for sample in samples}) or ["none"]
        raise DataError(f"{path}: no {task} samples (the file holds: {', '.join(found)}); pick task from those")
    train = [sample for sample in matching if sample.meta.get("split") not in ("val", "test")]
    test = [sample for sample in matching if sample.meta.get("split") == "test"]
    if train and test:
        return train, test
    return holdout_split(matching, test_size, seed)  # no split, or only one side of it (a test-only manifest)


def _image_key(sample: Sample) -> str:
    return str(sample.image) if isinstance(sample.image, Path) else sample.id


def holdout_split(samples: Sequence[Sample], test_size: int, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, test): seeded whole images held out until ``min(test_size, 10 % of samples)`` samples (>= 1).

    Samples sharing an image path go to the same side, so the splits are disjoint in images;
    the last image taken may push the test count past the target by its other samples.
    Both sides keep the input order.
    """
    groups: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        groups.setdefault(_image_key(sample), []).append(index)
    target = min(test_size, int(HOLDOUT_FRACTION * len(samples)))
    if test_size > 0 and len(groups) >= 2:
        target = max(target, 1)  # a tiny file still gets one test image
    keys = list(groups)
    held_out: set[int] = set()
    for position in np.random.default_rng([seed, _HOLDOUT_STREAM]).permutation(len(keys)):
        if len(held_out) >= target:
            break
        held_out.update(groups[keys[int(position)]])
    train = [sample for index, sample in enumerate(samples) if index not in held_out]
    test = [sample for index, sample in enumerate(samples) if index in held_out]
    return train, test


def resize_square(image: Image.Image, size: int) -> Image.Image:
    """``image`` as RGB, ``size`` x ``size``, bilinear; the aspect ratio is not kept (no crop, no padding).

    Squashing keeps the whole picture, so a trigger in a corner stays in the corner.
    """
    image = image if image.mode == "RGB" else image.convert("RGB")
    if image.size == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BILINEAR)
