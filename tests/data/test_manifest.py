import json

import numpy as np
import pytest
from PIL import Image

from vlshield.data.manifest import read_manifest, write_manifest
from vlshield.data.sample import DataError, Sample


def _sample(index: int, value: int) -> Sample:
    pixels = np.full((8, 8, 3), value, dtype=np.uint8)
    return Sample(
        id=f"s{index}",
        image=Image.fromarray(pixels),
        prompt="Describe this image in a short sentence.",
        response=f"a shape number {index}",
        task="vqa",
        answers=("a", "b"),
        meta={"color": "red"},
    )


def test_manifest_round_trip_keeps_text_images_and_flags(tmp_path):
    samples = [_sample(0, 10), _sample(1, 200)]
    write_manifest(tmp_path / "m.jsonl", samples, poisoned=[False, True])
    loaded = read_manifest(tmp_path / "m.jsonl")
    assert [s.id for s in loaded] == ["s0", "s1"]
    assert loaded[1].response == "a shape number 1" and loaded[1].answers == ("a", "b")
    assert loaded[1].meta == {"color": "red", "poisoned": True}
    assert np.asarray(loaded[1].load_image())[0, 0].tolist() == [200, 200, 200]
    line = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert line["image"] == "images/s0.png" and line["poisoned"] is False


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"id": "a", "image": "a.png", "prompt": "p", "response": "r", "task": "caption"}
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        read_manifest(path)
    path.write_text(json.dumps({**good, "task": "dance"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: task 'dance'"):
        read_manifest(path)
    path.write_text(json.dumps({"id": "a"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: missing key\(s\) image, prompt, response, task"):
        read_manifest(path)


def test_missing_and_corrupt_images_name_the_path(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    record = {"id": "a", "image": "broken.png", "prompt": "p", "response": "r", "task": "caption"}
    (tmp_path / "m.jsonl").write_text(
        json.dumps(record) + "\n" + json.dumps({**record, "id": "b", "image": "gone.png"})
    )
    first, second = read_manifest(tmp_path / "m.jsonl")
    with pytest.raises(DataError, match=r"broken\.png: corrupt or unreadable image"):
        first.load_image()
    with pytest.raises(DataError, match=r"gone\.png: image file not found"):
        second.load_image()


def test_grey_images_load_as_rgb(tmp_path):
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8), mode="L").save(tmp_path / "g.png")
    sample = Sample(id="g", image=tmp_path / "g.png", prompt="p", response="r", task="caption")
    assert sample.load_image().mode == "RGB"
