"""The built-in ``easy-vqa`` dataset: the images and questions of the ``easy-vqa`` package (MIT).

5,000 64 x 64 images (4,000 train, 1,000 test), each one shape (circle, rectangle, triangle)
in one of 8 colours on a noisy light background; 38,575 train and 9,673 test questions with
13 possible answers. The package's own splits are kept.

- VQA: one sample per question; prompt = question, response = answer, ``answers = (answer,)``.
- Caption: one sample per image, "a <colour> <shape>" (e.g. "a teal circle").

The package ships no labels, only questions, so each image's colour and shape are read from its
questions: an answer that is a colour or shape, the colour or shape a question names ("what is the
blue shape?"), and yes/no questions (a "yes" to "is there a red shape?" or a "no" to "is there
not a circle?" names what is present; the opposite rules a value out). About 1 image in 9 is not
pinned down that way; those are labelled from their pixels (the shapes are drawn in exact CSS
colours, and fill and symmetry of the shape's bounding box tell the three shapes apart), which
agrees with the question labels wherever both exist. ``meta["label_source"]`` says which was used.
Images are the package's PNG paths (64 px); the pipeline resizes them to its image size.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import easy_vqa
import numpy as np
from PIL import Image

from vlshield.data.formats import CAPTION_PROMPT
from vlshield.data.sample import DataError, Sample

SPLITS = ("train", "test")
# The colours easy-vqa draws with: CSS named colours, exact in every image.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "teal": (0, 128, 128),
    "brown": (165, 42, 42),
    "gray": (128, 128, 128),
    "black": (0, 0, 0),
}
SHAPE_NAMES = ("circle", "rectangle", "triangle")
_NEGATIONS = {"not", "no"}


def answer_vocabulary() -> tuple[str, ...]:
    """The package's 13 answers (colours, shapes, yes, no)."""
    return tuple(easy_vqa.get_answers())


def _questions(split: str) -> tuple[list[str], list[str], list[int]]:
    if split not in SPLITS:
        raise DataError(f"easy-vqa: unknown split {split!r} (valid: {', '.join(SPLITS)})")
    reader = easy_vqa.get_train_questions if split == "train" else easy_vqa.get_test_questions
    return reader()


def _image_paths(split: str) -> dict[int, Path]:
    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    return {image_id: Path(path) for image_id, path in paths.items()}  # one Path per image, shared by its questions


def labels_from_questions(
    questions: Sequence[str], answers: Sequence[str], image_ids: Sequence[int]
) -> dict[int, dict[str, str]]:
    """image id -> {"shape", "color"} for the images whose questions pin both down (module docstring)."""
    values = set(PALETTE) | set(SHAPE_NAMES)
    present: dict[int, set[str]] = {}
    ruled_out: dict[int, set[str]] = {}
    for question, answer, image_id in zip(questions, answers, image_ids, strict=True):
        words = set(re.findall(r"[a-z]+", question))
        named = words & values
        if answer in values or (answer == "yes") != bool(words & _NEGATIONS):
            present.setdefault(image_id, set()).update(named | ({answer} & values))
        else:
            ruled_out.setdefault(image_id, set()).update(named)
    labels = {}
    for image_id in sorted(set(image_ids)):
        seen, excluded = present.get(image_id, set()), ruled_out.get(image_id, set())
        colors = (seen & set(PALETTE)) or (set(PALETTE) - excluded)
        shapes = (seen & set(SHAPE_NAMES)) or (set(SHAPE_NAMES) - excluded)
        if len(colors) == 1 and len(shapes) == 1:
            labels[image_id] = {"shape": shapes.pop(), "color": colors.pop()}
    return labels


def labels_from_pixels(pixels: np.ndarray) -> dict[str, str]:
    """{"shape", "color"} of one easy-vqa image [h, w, 3] uint8.

    Colour: the palette colour with the most exactly matching pixels. Shape, from the box around
    those pixels: a rectangle fills it; a circle is symmetric top to bottom, an upright triangle is
    not (IoU with its flip >= 0.77 for circles, <= 0.48 for triangles, on every image whose
    questions name its shape).
    """
    palette = np.asarray(list(PALETTE.values()), dtype=np.uint8)  # [8, 3]
    matches = (pixels[None, :, :, :] == palette[:, None, None, :]).all(axis=-1)  # [8, h, w]
    best = int(matches.sum(axis=(1, 2)).argmax())
    rows, columns = np.nonzero(matches[best])
    if len(rows) == 0:
        raise DataError("easy-vqa: no pixel of any palette colour in the image")
    box = matches[best, rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    flipped = box[::-1]
    symmetry = (box & flipped).sum() / (box | flipped).sum()
    if box.mean() > 0.95:
        shape = "rectangle"
    else:
        shape = "circle" if symmetry > 0.62 else "triangle"
    return {"shape": shape, "color": list(PALETTE)[best]}


@functools.cache
def image_labels(split: str) -> dict[int, dict[str, str]]:
    """image id -> {"shape", "color", "label_source"} for every image of ``split`` (cached)."""
    questions, answers, image_ids = _questions(split)
    from_questions = labels_from_questions(questions, answers, image_ids)
    labels = {}
    for image_id, path in sorted(_image_paths(split).items()):
        if image_id in from_questions:
            labels[image_id] = {**from_questions[image_id], "label_source": "questions"}
        else:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            labels[image_id] = {**labels_from_pixels(pixels), "label_source": "pixels"}
    return labels


def _meta(image_id: int, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "shapes": [{"shape": labels["shape"], "color": labels["color"]}],
        "label_source": labels["label_source"],
    }


def load_easy_vqa(split: str, task: str) -> list[Sample]:
    """All samples of the package's ``split`` for ``task``: one per question (vqa) or per image (caption).

    Ids: ``easy-vqa-train-q00012`` (question 12) and ``easy-vqa-train-0007`` (image 7).
    """
    if task not in ("caption", "vqa"):
        raise DataError(f"easy-vqa: unknown task {task!r} (valid: caption, vqa)")
    questions, answers, image_ids = _questions(split)
    paths = _image_paths(split)
    labels = image_labels(split)
    if task == "caption":
        return [
            Sample(
                f"easy-vqa-{split}-{image_id:04d}",
                paths[image_id],
                CAPTION_PROMPT,
                f"a {labels[image_id]['color']} {labels[image_id]['shape']}",
                "caption",
                meta=_meta(image_id, labels[image_id]),
            )
            for image_id in sorted(paths)
        ]
    samples = []
    for index, (question, answer, image_id) in enumerate(zip(questions, answers, image_ids, strict=True)):
        if image_id not in paths:
            raise DataError(f"easy-vqa: question {index} of {split} refers to missing image {image_id}")
        meta = _meta(image_id, labels[image_id])
        samples.append(
            Sample(f"easy-vqa-{split}-q{index:05d}", paths[image_id], question, answer, "vqa", (answer,), meta)
        )
    return samples


def build_splits(
    task: str,
    *,
    seed: int = 0,
    train_size: int | None = None,
    test_size: int = 200,
    image_size: int = 64,
) -> tuple[list[Sample], list[Sample]]:
    """(train, test) for the registry: the package's full splits.

    ``seed``, ``train_size`` and ``test_size`` are applied by the registry (seeded shuffle, then
    cap); ``image_size`` does not apply, the images are the package's 64 px files.
    """
    del seed, train_size, test_size, image_size  # the registry samples and the pipeline resizes
    return load_easy_vqa("train", task), load_easy_vqa("test", task)
