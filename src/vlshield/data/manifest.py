"""JSONL manifests: one sample per line, images as paths relative to the manifest."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlshield.data.sample import TASKS, DataError, Sample
from vlshield.storage import atomic_write_text

REQUIRED_KEYS = ("id", "image", "prompt", "response", "task")


def _sample_from_record(record: Any, base: Path, where: str) -> Sample:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    for key in ("id", "image", "prompt", "response"):
        if not isinstance(record[key], str):
            raise DataError(f"{where}: key {key!r} must be a string")
    if record["task"] not in TASKS:
        raise DataError(f"{where}: task {record['task']!r} is not one of {', '.join(TASKS)}")
    answers = record.get("answers")
    if answers is not None and (not isinstance(answers, list) or not all(isinstance(a, str) for a in answers)):
        raise DataError(f"{where}: 'answers' must be a list of strings")
    meta = dict(record.get("meta") or {})
    if "poisoned" in record:
        meta["poisoned"] = bool(record["poisoned"])
    return Sample(
        id=record["id"],
        image=(base / record["image"]),
        prompt=record["prompt"],
        response=record["response"],
        task=record["task"],
        answers=tuple(answers) if answers is not None else None,
        meta=meta,
    )


def read_manifest(path: str | Path) -> list[Sample]:
    """Read a JSONL manifest. Blank lines are skipped; a malformed line raises DataError naming file and line.

    Images are not opened here (they load lazily); a ``poisoned`` key is kept in ``meta`` for
    evaluation and oracle baselines only.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    samples = []
    seen: set[str] = set()
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: malformed JSON ({error.msg})") from None
            sample = _sample_from_record(record, path.parent, where)
            if sample.id in seen:
                raise DataError(f"{where}: duplicate id {sample.id!r}")
            seen.add(sample.id)
            samples.append(sample)
    return samples


def sample_record(sample: Sample, image_path: str, poisoned: bool | None = None) -> dict[str, Any]:
    """The manifest line of ``sample`` with its image stored at ``image_path`` (relative)."""
    record: dict[str, Any] = {
        "id": sample.id,
        "image": image_path,
        "prompt": sample.prompt,
        "response": sample.response,
        "task": sample.task,
    }
    if sample.answers is not None:
        record["answers"] = list(sample.answers)
    meta = {key: value for key, value in sample.meta.items() if key != "poisoned"}
    if meta:
        record["meta"] = meta
    if poisoned is not None:
        record["poisoned"] = poisoned
    return record


def write_manifest(
    path: str | Path,
    samples: Iterable[Sample],
    image_dir: str = "images",
    poisoned: Iterable[bool] | None = None,
) -> None:
    """Write samples and their images (PNG, under ``image_dir`` beside the manifest) atomically.

    Each image is saved as ``<image_dir>/<id>.png``; PNG keeps triggers bit-exact.
    """
    path = Path(path)
    (path.parent / image_dir).mkdir(parents=True, exist_ok=True)
    flags = list(poisoned) if poisoned is not None else None
    buffer = io.StringIO()
    for index, sample in enumerate(samples):
        relative = f"{image_dir}/{safe_name(sample.id)}.png"
        sample.load_image().save(path.parent / relative, format="PNG")
        flag = flags[index] if flags is not None else None
        buffer.write(json.dumps(sample_record(sample, relative, flag), sort_keys=True) + "\n")
    atomic_write_text(path, buffer.getvalue())


def safe_name(sample_id: str) -> str:
    """A filesystem-safe file stem for a sample id."""
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in sample_id)
