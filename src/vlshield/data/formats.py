"""Readers for the dataset files researchers already have: COCO Karpathy, VQAv2, LLaVA, manifests.

Each reader returns ``list[Sample]`` with images as paths (opened lazily), resolved against an
image root that defaults to the JSON file's directory. Malformed content raises a DataError that
names the file and the entry. ``detect_format`` tells the formats apart by their JSON structure;
``read_dataset_file`` parses a file once and dispatches on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlshield.data.manifest import read_manifest
from vlshield.data.sample import TASKS, DataError, Sample

CAPTION_PROMPT = "Describe this image in a short sentence."
FORMATS = ("manifest", "coco-karpathy", "vqav2", "llava")
KARPATHY_SPLITS = ("train", "restval", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a DataError naming ``path`` if it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with path.open() as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: malformed JSON ({error.msg} at line {error.lineno})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not a UTF-8 text file ({error.reason})") from None


def _field(entry: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``entry[key]``, checked to be a ``kind``; a DataError naming ``where`` otherwise."""
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    if key not in entry:
        raise DataError(f"{where}: missing key {key!r}")
    value = entry[key]
    # bool is an int subclass, but an id of true is a mistake; no field here is a boolean.
    if isinstance(value, bool) or not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join(k.__name__ for k in kinds)
        raise DataError(f"{where}: key {key!r} must be {names}, got {type(value).__name__}")
    return value


def _detect(data: Any, path: Path) -> str:
    """The format of parsed JSON ``data`` from ``path`` (see ``detect_format``)."""
    if isinstance(data, dict):
        if isinstance(data.get("images"), list):
            entries = data["images"]
            if not entries or (isinstance(entries[0], dict) and "sentences" in entries[0]):
                return "coco-karpathy"
        if isinstance(data.get("questions"), list):
            return "vqav2"
        if isinstance(data.get("annotations"), list):
            raise DataError(
                f"{path}: this is a VQAv2 annotations file; pass the questions JSON as the dataset "
                "and this file as annotations"
            )
    if isinstance(data, list) and data and isinstance(data[0], dict) and "conversations" in data[0]:
        return "llava"
    raise DataError(
        f"{path}: unrecognised dataset format; expected a JSONL manifest, a COCO Karpathy JSON "
        "({'images': [{'filename', 'sentences', ...}]}), VQAv2 questions ({'questions': [...]}) "
        "or LLaVA conversations ([{'image', 'conversations'}])"
    )


def detect_format(path: str | Path) -> str:
    """One of ``FORMATS``: "manifest" for .jsonl, else by the JSON's structure.

    "coco-karpathy": an object with an ``images`` list whose entries have ``sentences``;
    "vqav2": an object with a ``questions`` list; "llava": a list of objects with
    ``conversations``. Anything else (a VQAv2 annotations file included) is a DataError.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        return "manifest"
    return _detect(read_json(path), path)


def _karpathy_sample(entry: Any, where: str, root: Path, dataset: str) -> Sample:
    filename = _field(entry, "filename", str, where)
    folder = entry.get("filepath", "")
    if not isinstance(folder, str):
        raise DataError(f"{where}: key 'filepath' must be str, got {type(folder).__name__}")
    sentences = _field(entry, "sentences", list, where)
    if not sentences:
        raise DataError(f"{where}: 'sentences' is empty")
    references = [
        _field(sentence, "raw", str, f"{where}.sentences[{n}]").strip() for n, sentence in enumerate(sentences)
    ]
    image_key = "cocoid" if "cocoid" in entry else "imgid"
    image_id = _field(entry, image_key, (int, str), where)
    meta: dict[str, Any] = {"references": references, "image_id": image_id}
    if "split" in entry:
        split = entry["split"]
        if split not in KARPATHY_SPLITS:
            raise DataError(f"{where}: split {split!r} is not one of {', '.join(KARPATHY_SPLITS)}")
        meta["split"] = split
    image = root / folder / filename
    return Sample(f"{dataset}-{image_id}", image, CAPTION_PROMPT, references[0], "caption", meta=meta)


def _karpathy_from_data(data: Any, path: Path, root: Path) -> list[Sample]:
    entries = _field(data, "images", list, str(path))
    dataset = data.get("dataset", "coco")
    if not isinstance(dataset, str) or not dataset:
        dataset = "coco"
    samples = [_karpathy_sample(entry, f"{path}: images[{n}]", root, dataset) for n, entry in enumerate(entries)]
    _check_unique_ids(samples, path)
    return samples


def read_coco_karpathy(path: str | Path, image_root: str | Path | None = None) -> list[Sample]:
    """Caption samples from a Karpathy-split JSON (``dataset_coco.json``, also Flickr8k/30k).

    One sample per image: response = the first sentence's ``raw`` text (stripped),
    ``meta["references"]`` = all raw sentences, ``meta["split"]`` = train/restval/val/test,
    ``meta["image_id"]`` = ``cocoid`` (else ``imgid``). The image is
    ``image_root / filepath / filename``; ids look like ``coco-391895``.
    """
    path = Path(path)
    return _karpathy_from_data(read_json(path), path, Path(image_root) if image_root else path.parent)


def find_vqav2_annotations(questions_path: str | Path) -> Path:
    """The annotations file beside a VQAv2 questions file, by the official naming.

    ``v2_OpenEnded_mscoco_train2014_questions.json`` -> ``v2_mscoco_train2014_annotations.json``;
    failing that, the only ``*annotations*.json`` in the same directory.
    """
    questions_path = Path(questions_path)
    name = re.sub(r"(OpenEnded|MultipleChoice)_", "", questions_path.name).replace("questions", "annotations")
    candidate = questions_path.with_name(name)
    if candidate != questions_path and candidate.is_file():
        return candidate
    siblings = sorted(questions_path.parent.glob("*annotations*.json"))
    if len(siblings) == 1:
        return siblings[0]
    raise DataError(
        f"{questions_path}: VQAv2 questions need their annotations file; none found beside it "
        f"(looked for {name}); pass annotations=PATH"
    )


def _image_index(root: Path) -> dict[int, Path]:
    """Image files under ``root`` keyed by the number their name ends with (COCO ids); the first path wins."""
    index: dict[int, Path] = {}
    for path in sorted(root.rglob("*")):
        match = re.search(r"(\d+)$", path.stem)
        if match and path.suffix.lower() in IMAGE_SUFFIXES:
            index.setdefault(int(match.group(1)), path)
    return index


def _coco_image_resolver(root: Path, subtype: str | None) -> Callable[[int], Path]:
    """image id -> path: ``COCO_{subtype}_{id:012d}.jpg`` in ``root`` or ``root/subtype``, else a directory lookup.

    When no file is found the conventional path is returned, so loading it later names it.
    """
    index: dict[int, Path] | None = None

    def resolve(image_id: int) -> Path:
        nonlocal index
        if subtype:
            name = f"COCO_{subtype}_{image_id:012d}.jpg"
            for candidate in (root / name, root / subtype / name):
                if candidate.is_file():
                    return candidate
        if index is None:
            index = _image_index(root)
        return index.get(image_id, root / (f"COCO_{subtype}_{image_id:012d}.jpg" if subtype else f"{image_id}.jpg"))

    return resolve


def _vqav2_answers(annotations_path: Path) -> dict[int, tuple[str, tuple[str, ...], dict[str, str]]]:
    """question id -> (multiple-choice answer, the human answers, answer/question type)."""
    data = read_json(annotations_path)
    entries = _field(data, "annotations", list, str(annotations_path))
    answers = {}
    for n, entry in enumerate(entries):
        where = f"{annotations_path}: annotations[{n}]"
        question_id = _field(entry, "question_id", int, where)
        best = _field(entry, "multiple_choice_answer", str, where)
        human = _field(entry, "answers", list, where)
        if not human:
            raise DataError(f"{where}: 'answers' is empty")
        texts = tuple(_field(answer, "answer", str, f"{where}.answers[{k}]") for k, answer in enumerate(human))
        types = {key: entry[key] for key in ("answer_type", "question_type") if isinstance(entry.get(key), str)}
        answers[question_id] = (best, texts, types)
    return answers


def _vqav2_from_data(data: Any, path: Path, annotations: Path | None, root: Path) -> list[Sample]:
    questions = _field(data, "questions", list, str(path))
    annotations_path = annotations or find_vqav2_annotations(path)
    answers = _vqav2_answers(annotations_path)
    subtype = data.get("data_subtype") if isinstance(data.get("data_subtype"), str) else None
    resolve = _coco_image_resolver(root, subtype)
    samples = []
    for n, entry in enumerate(questions):
        where = f"{path}: questions[{n}]"
        question_id = _field(entry, "question_id", int, where)
        image_id = _field(entry, "image_id", int, where)
        question = _field(entry, "question", str, where)
        if question_id not in answers:
            raise DataError(f"{where}: question_id {question_id} has no entry in {annotations_path}")
        best, human, types = answers[question_id]
        meta = {"image_id": image_id, "question_id": question_id, **types}
        samples.append(Sample(f"vqav2-{question_id}", resolve(image_id), question.strip(), best, "vqa", human, meta))
    _check_unique_ids(samples, path)
    return samples


def read_vqav2(
    questions_path: str | Path,
    annotations_path: str | Path | None = None,
    image_root: str | Path | None = None,
) -> list[Sample]:
    """VQA samples from VQAv2 questions + annotations JSON (Goyal et al., 2017).

    Response = ``multiple_choice_answer``; ``answers`` = the (usually 10) human answers, for the
    VQAv2 accuracy formula. Annotations default to the file beside the questions
    (``find_vqav2_annotations``). Images are ``COCO_{data_subtype}_{image_id:012d}.jpg`` under
    ``image_root`` (default: the questions' directory) or its ``data_subtype`` folder, else found by
    the image id their file name ends with. Ids look like ``vqav2-458752000``.
    """
    path = Path(questions_path)
    root = Path(image_root) if image_root else path.parent
    return _vqav2_from_data(read_json(path), path, Path(annotations_path) if annotations_path else None, root)


_HUMAN_ROLES, _MODEL_ROLES = ("human", "user"), ("gpt", "assistant")


def _llava_sample(entry: Any, where: str, root: Path, task: str) -> Sample | None:
    if isinstance(entry, dict) and "image" not in entry:
        return None  # a text-only conversation (LLaVA's instruction mixes have them): nothing to see
    source_id = _field(entry, "id", (str, int), where)
    image = _field(entry, "image", str, where)
    turns = _field(entry, "conversations", list, where)
    for n in range(len(turns) - 1):
        speaker = _field(turns[n], "from", str, f"{where}.conversations[{n}]")
        reply = _field(turns[n + 1], "from", str, f"{where}.conversations[{n + 1}]")
        if speaker in _HUMAN_ROLES and reply in _MODEL_ROLES:
            question = _field(turns[n], "value", str, f"{where}.conversations[{n}]")
            answer = _field(turns[n + 1], "value", str, f"{where}.conversations[{n + 1}]").strip()
            break
    else:
        raise DataError(f"{where}: no human turn followed by a gpt turn in 'conversations'")
    prompt = question.replace("<image>", "").strip()
    if not prompt:
        if task != "caption":
            raise DataError(f"{where}: the question is empty once '<image>' is removed")
        prompt = CAPTION_PROMPT
    answers = (answer,) if task == "vqa" else None
    return Sample(f"llava-{source_id}", root / image, prompt, answer, task, answers, {"source_id": source_id})


def _llava_from_data(data: Any, path: Path, root: Path, task: str) -> list[Sample]:
    if task not in TASKS:
        raise DataError(f"{path}: task {task!r} is not one of {', '.join(TASKS)}")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of LLaVA conversations, got {type(data).__name__}")
    samples: list[Sample] = []
    seen: set[str] = set()
    for n, entry in enumerate(data):
        sample = _llava_sample(entry, f"{path}: [{n}]", root, task)
        if sample is None:
            continue
        if sample.id in seen:  # LLaVA mixes repeat ids; the entry index keeps ours unique
            sample = sample.replace(id=f"{sample.id}-{n}")
        seen.add(sample.id)
        samples.append(sample)
    return samples


def read_llava(path: str | Path, task: str = "caption", image_root: str | Path | None = None) -> list[Sample]:
    """Samples from a LLaVA conversation JSON (Liu et al., 2023): the first human -> gpt turn pair of each entry.

    The prompt is the human turn without the ``<image>`` placeholder and surrounding newlines
    (an empty one becomes ``CAPTION_PROMPT`` for captions); the response is the gpt turn. Entries
    without an ``image`` (text-only) are skipped. ``task`` labels every sample; "vqa" samples get
    ``answers = (response,)``. Ids look like ``llava-<id>``; a repeated id gets ``-<entry index>``.
    """
    path = Path(path)
    return _llava_from_data(read_json(path), path, Path(image_root) if image_root else path.parent, task)


def read_dataset_file(
    path: str | Path,
    task: str = "caption",
    image_root: str | Path | None = None,
    annotations: str | Path | None = None,
) -> list[Sample]:
    """Read any supported file (``FORMATS``), parsing it once.

    ``task`` is used by LLaVA files (which do not say their task); the other formats carry their
    own. ``image_root`` does not apply to manifests, whose images are relative to the manifest.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_manifest(path)
    data = read_json(path)
    kind = _detect(data, path)
    root = Path(image_root) if image_root else path.parent
    if kind == "coco-karpathy":
        return _karpathy_from_data(data, path, root)
    if kind == "vqav2":
        return _vqav2_from_data(data, path, Path(annotations) if annotations else None, root)
    return _llava_from_data(data, path, root, task)


def _check_unique_ids(samples: list[Sample], path: Path) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise DataError(f"{path}: duplicate id {sample.id!r}")
        seen.add(sample.id)
