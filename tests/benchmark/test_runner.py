"""The runner's bookkeeping on a fake pipeline: result files, the data cache, skipping, failures, shards."""

from __future__ import annotations

import json

import pytest

from vlshield.benchmark import runner
from vlshield.benchmark.grid import GridConfig
from vlshield.benchmark.runner import Shard, run_grid
from vlshield.cli import main
from vlshield.config import ConfigError

NAMES = [
    "llava_tiny--caption--badnet--none--0.1--0",
    "llava_tiny--caption--badnet--pcr--0.1--0",
    "llava_tiny--caption--blended--none--0.1--0",
    "llava_tiny--caption--blended--pcr--0.1--0",
]


def _record(out, name):
    return json.loads((out / "cells" / f"{name}.json").read_text())


def test_one_result_file_per_cell_with_config_metrics_timings_and_provenance(fake, grid, tmp_path):
    outcome = run_grid(grid, tmp_path, progress=False)
    assert outcome.ran == NAMES and outcome.failed == outcome.skipped == []
    assert sorted(path.stem for path in (tmp_path / "cells").glob("*.json")) == NAMES
    record = _record(tmp_path, NAMES[1])
    assert record["status"] == "ok"
    assert record["cell"] == {
        "model": "llava:tiny", "task": "caption", "dataset": "shapes", "attack": "badnet", "defense": "pcr",
        "rate": 0.1, "seed": 0,
    }  # fmt: skip
    assert record["config"]["poison"]["limit"] == 40 and record["config"]["poison"]["rate"] == 0.1
    assert record["config"]["run"]["defense"] == "pcr" and record["config"]["run"]["train"]["seed"] == 0
    assert record["metrics"]["asr"] == 0.25
    assert set(record["timings"]) == {"poison_seconds", "train_seconds", "eval_seconds", "total_seconds"}
    assert "git_revision" in record and record["versions"]["vlshield"]
    assert record["train"]["steps"] == 4 and record["train"]["final_losses"]["task_loss"] == 0.5
    # the defense's decisions: short lists kept, per-sample lists (> 50) only counted
    assert record["train"]["defense"] == {
        "flagged_indices": [1, 2, 3], "flagged_indices_count": 3, "pmi_count": 60, "threshold": 0.5,
    }  # fmt: skip


def test_poisoned_data_is_shared_by_cells_differing_only_in_defense(fake, grid, tmp_path):
    run_grid(grid, tmp_path, progress=False)
    assert len(fake.poisoned) == 2  # badnet and blended, each once, for two defenses
    data_dirs = {_record(tmp_path, name)["data_dir"] for name in NAMES}
    assert len(data_dirs) == 2
    assert [_record(tmp_path, name)["poison_cached"] for name in NAMES] == [False, True, False, True]


def test_bulky_run_parts_are_deleted_unless_kept(fake, grid, tmp_path):
    run_grid(grid, tmp_path / "lean", progress=False)
    run_dir = tmp_path / "lean" / "runs" / NAMES[0]
    assert (run_dir / "config.json").is_file()
    assert not (run_dir / "model").exists() and not (run_dir / "checkpoints").exists()
    run_grid(grid, tmp_path / "kept", keep_runs=True, progress=False)
    assert (tmp_path / "kept" / "runs" / NAMES[0] / "model").is_dir()


def test_finished_cells_are_skipped(fake, grid, tmp_path):
    run_grid(grid, tmp_path, progress=False)
    mtimes = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "cells").iterdir()}
    fake.trained.clear()
    outcome = run_grid(grid, tmp_path, progress=False)
    assert outcome.skipped == NAMES and outcome.ran == []
    assert fake.trained == [] and fake.evaluated == NAMES  # evaluated only by the first run
    assert {path.name: path.stat().st_mtime_ns for path in (tmp_path / "cells").iterdir()} == mtimes


def test_a_cell_another_process_finished_meanwhile_is_skipped(fake, grid, tmp_path, monkeypatch):
    # Two processes on one --out: the first finishes cell 2 while this one is on cell 0.
    original_train = fake.train

    def train_and_finish_cell_two(config, run_dir, **kwargs):
        summary = original_train(config, run_dir, **kwargs)
        if not (tmp_path / "cells" / f"{NAMES[2]}.json").exists():
            (tmp_path / "cells").mkdir(exist_ok=True)
            (tmp_path / "cells" / f"{NAMES[2]}.json").write_text(json.dumps({"status": "ok"}))
        return summary

    monkeypatch.setattr(runner, "train", train_and_finish_cell_two)
    outcome = run_grid(grid, tmp_path, progress=False)
    assert outcome.ran == [NAMES[0], NAMES[1], NAMES[3]] and outcome.skipped == [NAMES[2]]
    assert fake.trained == [NAMES[0], NAMES[1], NAMES[3]]


def test_a_failing_cell_is_recorded_the_grid_goes_on_and_the_next_run_retries_it(fake, grid, tmp_path):
    fake.fail = {("blended", "none")}
    outcome = run_grid(grid, tmp_path, progress=False)
    assert outcome.failed == [NAMES[2]]
    assert outcome.ran == [NAMES[0], NAMES[1], NAMES[3]]  # the cell after the failure ran too
    failed = _record(tmp_path, NAMES[2])
    assert failed["status"] == "failed" and failed["stage"] == "train"
    assert failed["error"] == "RuntimeError: boom in blended/none"
    assert any("boom in blended/none" in line for line in failed["traceback"])
    assert "metrics" not in failed

    fake.fail = set()
    fake.trained.clear()
    outcome = run_grid(grid, tmp_path, progress=False)
    assert outcome.ran == [NAMES[2]] and outcome.skipped == [NAMES[0], NAMES[1], NAMES[3]]
    assert fake.trained == [NAMES[2]]
    assert _record(tmp_path, NAMES[2])["status"] == "ok"


def test_a_shard_runs_exactly_its_cells(fake, grid, tmp_path):
    run_grid(grid, tmp_path, shard=Shard(1, 2), progress=False)
    assert sorted(path.stem for path in (tmp_path / "cells").glob("*.json")) == [NAMES[1], NAMES[3]]
    run_grid(grid, tmp_path, shard=Shard(0, 2), progress=False)
    assert sorted(path.stem for path in (tmp_path / "cells").glob("*.json")) == NAMES
    assert len(fake.trained) == 4


def test_a_bad_grid_fails_before_any_cell_runs(fake, tmp_path):
    grid = GridConfig(models=("llava:tiny", "nosuch:tiny"), attacks=("badnet", "nosuch"))
    with pytest.raises(ConfigError, match="nosuch"):
        run_grid(grid, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert fake.poisoned == fake.trained == []


def test_cli_dry_run_lists_cells_and_an_estimate_and_runs_nothing(fake, tmp_path, capsys):
    assert main(["benchmark", "--grid", "paper", "--out", str(tmp_path / "out"), "--shard", "1/4", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # 3 models x 2 tasks x 6 attacks x 4 defenses (none, pcr and the controls oracle, random_flags)
    # = 144, plus llava captioning at 1 % and 10 %: 6 x 4 x 2 = 48; 192 cells, shard 1/4 takes 48.
    assert len(lines) == 1 + len(range(1, 192, 4))
    assert lines[0].split()[:3] == ["1", "llava_tiny--caption--badnet--pcr--0.05--0", "pending"]
    assert "48 cells, 0 done, 48 to run, estimated" in lines[-1] and " h " in lines[-1]
    assert not (tmp_path / "out").exists() and fake.poisoned == []


def test_cli_reports_a_bad_grid_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("attacks: [badnet, nosuchattack]\ndefenses: [none, nosuchdefense]\n")
    assert main(["benchmark", "--grid", str(path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "nosuchattack" in error and "nosuchdefense" in error
