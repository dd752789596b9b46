"""File formats: each fixture reads to the samples written in it; malformed files name the file and entry."""

import json
import re
from pathlib import Path

import pytest

from vlshield.data.formats import (
    CAPTION_PROMPT,
    detect_format,
    find_vqav2_annotations,
    read_coco_karpathy,
    read_dataset_file,
    read_llava,
    read_vqav2,
)
from vlshield.data.sample import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
COCO = FIXTURES / "coco" / "dataset_coco.json"
VQA_QUESTIONS = FIXTURES / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json"
VQA_ANNOTATIONS = FIXTURES / "vqav2" / "v2_mscoco_val2014_annotations.json"
LLAVA = FIXTURES / "llava" / "llava_instruct.json"


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_detect_format_of_each_fixture(tmp_path):
    assert detect_format(COCO) == "coco-karpathy"
    assert detect_format(VQA_QUESTIONS) == "vqav2"
    assert detect_format(LLAVA) == "llava"
    assert detect_format(tmp_path / "train.jsonl") == "manifest"  # by suffix, without opening it


def test_detect_format_rejects_annotations_and_unknown_json(tmp_path):
    with pytest.raises(DataError, match="VQAv2 annotations file"):
        detect_format(VQA_ANNOTATIONS)
    unknown = write_json(tmp_path / "other.json", {"rows": []})
    with pytest.raises(DataError, match=re.escape(f"{unknown}: unrecognised dataset format")):
        detect_format(unknown)


def test_coco_karpathy_reads_one_caption_sample_per_image():
    samples = read_coco_karpathy(COCO)
    assert [s.id for s in samples] == [f"coco-{n}" for n in range(101, 107)]
    assert [s.meta["split"] for s in samples] == ["train", "train", "restval", "val", "test", "test"]
    second = samples[1]
    assert second.task == "caption"
    assert second.prompt == CAPTION_PROMPT
    assert second.response == "A blue circle."
    assert second.meta["references"] == ["A blue circle.", "A round blue shape in the middle.", "Blue disc."]
    assert second.image == FIXTURES / "coco" / "train2014" / "COCO_train2014_000000000102.jpg"
    assert samples[4].response == "A black square."  # raw " A black square. " stripped
    assert second.load_image().size == (16, 16)


def test_coco_karpathy_image_root_override(tmp_path):
    samples = read_coco_karpathy(COCO, image_root=tmp_path)
    assert samples[0].image == tmp_path / "train2014" / "COCO_train2014_000000000101.jpg"


def test_vqav2_reads_questions_with_their_ten_answers():
    samples = read_vqav2(VQA_QUESTIONS)  # the annotations are found beside the questions
    assert [s.id for s in samples] == ["vqav2-420", "vqav2-421", "vqav2-430", "vqav2-431", "vqav2-440"]
    shape = samples[2]
    assert (shape.prompt, shape.response, shape.task) == ("What shape is this?", "square", "vqa")
    assert len(shape.answers) == 10
    assert shape.answers.count("square") == 7
    assert shape.meta == {"image_id": 43, "question_id": 430, "answer_type": "other", "question_type": "what"}
    assert shape.image == FIXTURES / "vqav2" / "val2014" / "COCO_val2014_000000000043.jpg"
    # Image 44 is not stored under its COCO name: the directory lookup by id finds it.
    assert samples[4].image == FIXTURES / "vqav2" / "other" / "000000000044.png"
    assert samples[4].load_image().size == (16, 16)


def test_vqav2_annotations_are_found_by_the_official_naming():
    assert find_vqav2_annotations(VQA_QUESTIONS) == VQA_ANNOTATIONS


def test_llava_reads_the_first_turn_pair_and_skips_text_only_entries():
    samples = read_llava(LLAVA)
    assert [s.id for s in samples] == ["llava-000000000007", "llava-000000000008"]
    assert [s.prompt for s in samples] == ["What is in the picture?", "Which shape is shown?"]
    assert [s.response for s in samples] == ["An orange circle.", "A gray square."]
    assert {s.task for s in samples} == {"caption"}
    assert samples[0].answers is None
    assert samples[1].image == FIXTURES / "llava" / "images" / "000000000008.png"


def test_llava_as_vqa_keeps_the_answer_as_reference():
    samples = read_llava(LLAVA, task="vqa")
    assert [s.answers for s in samples] == [("An orange circle.",), ("A gray square.",)]


def test_read_dataset_file_dispatches_on_the_content():
    assert len(read_dataset_file(COCO)) == 6
    assert len(read_dataset_file(VQA_QUESTIONS, annotations=str(VQA_ANNOTATIONS))) == 5
    assert len(read_dataset_file(LLAVA, task="vqa")) == 2


def test_malformed_json_names_the_file(tmp_path):
    broken = tmp_path / "dataset_coco.json"
    broken.write_text('{"images": [')
    with pytest.raises(DataError, match=re.escape(f"{broken}: malformed JSON")):
        read_coco_karpathy(broken)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match="nothing.json: file not found"):
        read_llava(tmp_path / "nothing.json")


def test_karpathy_entry_without_filename_names_the_entry(tmp_path):
    data = json.loads(COCO.read_text())
    del data["images"][1]["filename"]
    path = write_json(tmp_path / "dataset_coco.json", data)
    with pytest.raises(DataError, match=r"images\[1\]: missing key 'filename'"):
        read_coco_karpathy(path)


def test_karpathy_sentence_without_raw_and_bad_split(tmp_path):
    data = json.loads(COCO.read_text())
    data["images"][2]["sentences"][0] = {"tokens": ["a"]}
    path = write_json(tmp_path / "dataset_coco.json", data)
    with pytest.raises(DataError, match=r"images\[2\]\.sentences\[0\]: missing key 'raw'"):
        read_coco_karpathy(path)
    data = json.loads(COCO.read_text())
    data["images"][0]["split"] = "holdout"
    path = write_json(tmp_path / "dataset_coco.json", data)
    with pytest.raises(DataError, match=r"images\[0\]: split 'holdout' is not one of"):
        read_coco_karpathy(path)


def test_vqav2_question_without_annotation_names_both_files(tmp_path):
    annotations = json.loads(VQA_ANNOTATIONS.read_text())
    annotations["annotations"] = annotations["annotations"][:-1]
    annotations_path = write_json(tmp_path / "annotations.json", annotations)
    with pytest.raises(DataError, match=r"questions\[4\]: question_id 440 has no entry in .*annotations.json"):
        read_vqav2(VQA_QUESTIONS, annotations_path)


def test_vqav2_wrong_types_and_missing_annotations(tmp_path):
    questions = json.loads(VQA_QUESTIONS.read_text())
    questions["questions"][3]["image_id"] = "43"
    path = write_json(tmp_path / "questions.json", questions)
    with pytest.raises(DataError, match=r"questions\[3\]: key 'image_id' must be int, got str"):
        read_vqav2(path, VQA_ANNOTATIONS)
    with pytest.raises(DataError, match="need their annotations file"):
        read_vqav2(path)  # no annotations file beside it in tmp_path


def test_llava_entry_without_a_gpt_reply_names_the_entry(tmp_path):
    data = json.loads(LLAVA.read_text())
    data[2]["conversations"] = [{"from": "human", "value": "<image>\nWhat?"}]
    path = write_json(tmp_path / "llava.json", data)
    with pytest.raises(DataError, match=re.escape(f"{path}: [2]: no human turn followed by a gpt turn")):
        read_llava(path)


def test_llava_repeated_ids_stay_unique(tmp_path):
    data = json.loads(LLAVA.read_text())
    data.append(data[0])
    path = write_json(tmp_path / "llava.json", data)
    assert [s.id for s in read_llava(path)] == ["llava-000000000007", "llava-000000000008", "llava-000000000007-3"]
