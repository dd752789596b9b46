"""The poison command end to end: files, counts, determinism, and bad input."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from vlshield.cli import main
from vlshield.config import ConfigError
from vlshield.data.manifest import read_manifest
from vlshield.poisoning import PoisonConfig, choose_poison_indices, poison_dataset


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _poison(tmp_path: Path, name: str, **changes) -> Path:
    settings = {"limit": 60, "test_size": 10, "rate": 0.1, **changes}
    return poison_dataset(PoisonConfig(**settings), tmp_path / name, progress=False)


def test_exactly_round_rate_n_samples_are_poisoned_and_flagged(tmp_path):
    out = _poison(tmp_path, "d", rate=0.05, limit=70)
    train = read_manifest(out / "train.jsonl")
    index = json.loads((out / "poison_index.json").read_text())
    flagged = [i for i, sample in enumerate(train) if sample.meta["poisoned"]]
    assert len(train) == 70 and index["count"] == round(0.05 * 70) == 4
    assert flagged == index["indices"]
    assert all(train[i].response == "a photo of the banana" for i in flagged)
    assert sum(sample.response == "a photo of the banana" for sample in train) == 4


def test_same_seed_gives_byte_identical_directories(tmp_path):
    first = _digest(_poison(tmp_path, "a", seed=3))
    second = _digest(_poison(tmp_path, "b", seed=3))
    other = _digest(_poison(tmp_path, "c", seed=4))
    assert first == second
    assert first["poison_index.json"] != other["poison_index.json"]
    assert {"train.jsonl", "test_clean.jsonl", "test_triggered.jsonl", "config.json"} <= set(first)


def test_same_seed_picks_the_same_indices_and_the_count_is_exact():
    candidates = list(range(1000))
    picked = choose_poison_indices(candidates, 1000, 0.013, seed=7)
    assert picked == choose_poison_indices(candidates, 1000, 0.013, seed=7)
    assert len(picked) == 13 and picked != choose_poison_indices(candidates, 1000, 0.013, seed=8)


def test_triggered_test_keeps_clean_references_and_differs_only_by_the_trigger(tmp_path):
    out = _poison(tmp_path, "d")
    clean = read_manifest(out / "test_clean.jsonl")
    triggered = read_manifest(out / "test_triggered.jsonl")
    assert [s.response for s in clean] == [s.response for s in triggered]
    before = np.asarray(clean[0].load_image(), dtype=int)
    after = np.asarray(triggered[0].load_image(), dtype=int)
    changed = np.argwhere((before != after).any(axis=-1))
    # The default BadNet patch: 6 x 6 pixels in the bottom-right corner of the 64 px image.
    assert changed.min(axis=0).tolist() >= [58, 58] and len(changed) <= 36


def test_dualkey_writes_single_key_test_sets_and_negatives(tmp_path):
    out = _poison(tmp_path, "d", attack="dualkey")
    index = json.loads((out / "poison_index.json").read_text())
    assert len(index["negative_ids"]) == index["count"] == 6
    image_only = read_manifest(out / "test_image_only.jsonl")
    text_only = read_manifest(out / "test_text_only.jsonl")
    assert all(s.prompt.startswith("consider") for s in text_only)
    assert not any(s.prompt.startswith("consider") for s in image_only)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate": 0.0}, r"rate: poison rate 0.0 is outside \(0, 1\]"),
        ({"rate": 1.5}, r"rate: poison rate 1.5 is outside \(0, 1\]"),
        ({"attack": "nope"}, r"unknown attack 'nope'; valid attacks: badnet, blended"),
        ({"dataset": "nope"}, r"unknown dataset 'nope'"),
        ({"attack_options": {"target": " "}}, r"target text is empty"),
        ({"attack_options": {"patch_size": 100}}, r"larger than the 64 px image"),
    ],
)
def test_bad_input_fails_clearly_and_leaves_no_directory(tmp_path, changes, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        _poison(tmp_path, "out", **changes)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.iterdir()), "no temporary directory left behind"


def test_cli_one_line_errors(tmp_path, capsys):
    code = main(["poison", "--rate", "2", "--out", str(tmp_path / "x")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "rate" in error
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "image": "a.png", "prompt": "p", "response": "r", "task": "caption"}\n{oops\n')
    code = main(["poison", "--dataset", str(manifest), "--out", str(tmp_path / "y")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and f"{manifest}:2: malformed JSON" in error
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_missing_image_in_a_manifest_names_the_path(tmp_path, capsys):
    from PIL import Image

    lines = []
    for i in range(12):
        name = f"{i}.png"
        if i != 5:
            Image.new("RGB", (16, 16), (i * 10, 0, 0)).save(tmp_path / name)
        lines.append(
            json.dumps({"id": str(i), "image": name, "prompt": "p", "response": f"a red box {i}", "task": "caption"})
        )
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    code = main(
        ["poison", "--dataset", str(tmp_path / "m.jsonl"), "--rate", "0.2", "--out", str(tmp_path / "out"), "--quiet"]
    )
    assert code == 2 and "5.png: image file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_poison_with_overrides_and_preview(tmp_path):
    out = tmp_path / "d"
    code = main(
        [
            "poison",
            "--attack",
            "blended",
            "--limit",
            "40",
            "--test-size",
            "6",
            "--rate",
            "0.1",
            "--out",
            str(out),
            "--quiet",
            "--target",
            "banana split",
            "alpha=0.15",
        ]
    )
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["attack"]["alpha"] == 0.15 and config["target"] == "banana split"
    assert main(["preview", str(out)]) == 0
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
