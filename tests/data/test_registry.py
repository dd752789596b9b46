"""load_dataset: built-ins and files, caps, seeded shuffles, disjoint splits, clear errors."""

import json
from pathlib import Path

import pytest
from PIL import Image

from vlshield.data.manifest import write_manifest
from vlshield.data.registry import BUILTIN_DATASETS, DatasetSplits, holdout_split, load_dataset, resize_square
from vlshield.data.sample import DataError, Sample
from vlshield.data.shapes import load_shapes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
COCO = str(FIXTURES / "coco" / "dataset_coco.json")
VQA_QUESTIONS = str(FIXTURES / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json")
LLAVA = str(FIXTURES / "llava" / "llava_instruct.json")


def ids(samples: list[Sample]) -> list[str]:
    return [sample.id for sample in samples]


def test_builtin_names():
    assert list(BUILTIN_DATASETS) == ["shapes", "shapes-textured", "easy-vqa"]


def test_unknown_dataset_lists_the_builtins():
    with pytest.raises(DataError) as error:
        load_dataset("foo", "caption")
    assert str(error.value) == (
        "unknown dataset 'foo': not a built-in (shapes, shapes-textured, easy-vqa) nor an existing file"
    )


def test_bad_task_and_limit_are_data_errors():
    with pytest.raises(DataError, match="unknown task 'grounding'"):
        load_dataset("shapes", "grounding")
    with pytest.raises(DataError, match="limit must be a positive number"):
        load_dataset("shapes", "caption", limit=0)


def test_shapes_limit_and_test_size():
    splits = load_dataset("shapes", "vqa", seed=0, limit=120, test_size=30, image_size=32)
    assert isinstance(splits, DatasetSplits)
    assert (len(splits.train), len(splits.test)) == (240, 30)  # 120 questions + their descriptions
    assert splits.train[0].load_image().size == (32, 32)
    assert {s.task for s in splits.test} == {"vqa"}
    # The training split is the instruction mix: 120 scenes, each a question and a description.
    assert sorted(s.task for s in splits.train) == ["caption"] * 120 + ["vqa"] * 120
    assert all(s.id.startswith("shapes-train-") for s in splits.train)


def test_shapes_without_limit_has_2000_training_samples():
    assert len(load_dataset("shapes", "caption", test_size=0).train) == 2000


def test_same_seed_same_samples_other_seed_other_samples():
    first = load_dataset("shapes", "caption", seed=4, limit=50, test_size=10)
    again = load_dataset("shapes", "caption", seed=4, limit=50, test_size=10)
    other = load_dataset("shapes", "caption", seed=5, limit=50, test_size=10)
    assert [s.response for s in first.train] == [s.response for s in again.train]
    assert [s.response for s in first.test] == [s.response for s in again.test]
    assert [s.response for s in first.train] != [s.response for s in other.train]


def test_limit_takes_the_first_samples_of_one_seeded_shuffle():
    everything = load_dataset("easy-vqa", "vqa", seed=1, test_size=5)
    capped = load_dataset("easy-vqa", "vqa", seed=1, limit=40, test_size=5)
    assert len(everything.train) == 38575
    assert ids(capped.train) == ids(everything.train)[:40]
    assert ids(capped.train) != ids(load_dataset("easy-vqa", "vqa", seed=2, limit=40, test_size=5).train)
    assert len(capped.test) == 5


def test_easy_vqa_splits_share_no_image():
    splits = load_dataset("easy-vqa", "caption", limit=500, test_size=200)
    assert (len(splits.train), len(splits.test)) == (500, 200)
    assert {s.image for s in splits.train}.isdisjoint(s.image for s in splits.test)


def test_textured_shapes_builtin():
    backgrounds = [s.meta["background"] for s in load_dataset("shapes-textured", "caption", limit=100).train]
    assert 30 < backgrounds.count("textured") < 70


def test_karpathy_file_uses_its_splits():
    splits = load_dataset(COCO, "caption")
    assert sorted(ids(splits.train)) == ["coco-101", "coco-102", "coco-103"]  # train + restval
    assert sorted(ids(splits.test)) == ["coco-105", "coco-106"]  # val (coco-104) is in neither
    assert len(load_dataset(COCO, "caption", limit=2, test_size=1).train) == 2


def test_karpathy_file_with_only_test_images_holds_some_out(tmp_path):
    data = json.loads(Path(COCO).read_text())
    data["images"] = [entry for entry in data["images"] if entry["split"] == "test"]
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(data))
    splits = load_dataset(str(path), "caption", image_root=str(FIXTURES / "coco"))
    assert (len(splits.train), len(splits.test)) == (1, 1)
    assert sorted(ids(splits.train + splits.test)) == ["coco-105", "coco-106"]


def test_karpathy_file_asked_for_vqa_says_what_it_holds():
    with pytest.raises(DataError, match=r"dataset_coco.json: no vqa samples \(the file holds: caption\)"):
        load_dataset(COCO, "vqa")


def test_vqav2_file_holds_out_whole_images():
    splits = load_dataset(VQA_QUESTIONS, "vqa", seed=0)
    # 5 questions on 3 images; 10 % rounds to 0, so one image (all of its questions) is held out.
    assert len(splits.train) + len(splits.test) == 5
    test_images = {s.image for s in splits.test}
    assert len(test_images) == 1
    assert test_images.isdisjoint(s.image for s in splits.train)


def test_llava_file_is_read_as_the_requested_task():
    splits = load_dataset(LLAVA, "vqa", seed=0)
    assert sorted(ids(splits.train + splits.test)) == ["llava-000000000007", "llava-000000000008"]
    assert (len(splits.train), len(splits.test)) == (1, 1)
    assert {s.task for s in splits.train} == {"vqa"}


def test_manifest_round_trip(tmp_path):
    samples = load_shapes("train", "caption", 30, seed=0, image_size=16)
    write_manifest(tmp_path / "train.jsonl", samples)
    splits = load_dataset(str(tmp_path / "train.jsonl"), "caption", seed=0)
    # 10 % of 30 samples (each its own image) are held out.
    assert (len(splits.train), len(splits.test)) == (27, 3)
    assert sorted(ids(splits.train + splits.test)) == sorted(ids(samples))
    with pytest.raises(DataError, match="no vqa samples"):
        load_dataset(str(tmp_path / "train.jsonl"), "vqa")


def test_holdout_split_keeps_test_size_when_smaller_than_ten_percent():
    samples = load_shapes("train", "caption", 100, seed=0)
    train, test = holdout_split(samples, test_size=4, seed=0)
    assert (len(train), len(test)) == (96, 4)
    train, test = holdout_split(samples, test_size=50, seed=0)
    assert (len(train), len(test)) == (90, 10)
    assert holdout_split(samples, test_size=50, seed=0) == (train, test)
    assert ids(train) == sorted(ids(train))  # input order kept


def test_resize_square():
    wide = Image.new("L", (16, 8), 200)
    resized = resize_square(wide, 32)
    assert (resized.size, resized.mode) == ((32, 32), "RGB")
    assert resized.getpixel((0, 0)) == (200, 200, 200)
    already = Image.new("RGB", (32, 32))
    assert resize_square(already, 32) is already
