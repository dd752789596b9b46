"""``--workers``: cells run side by side in worker processes give the numbers of a one-by-one, one-thread run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vlshield.benchmark.grid import check_grid, load_grid
from vlshield.benchmark.runner import run_grid
from vlshield.config import ConfigError

pytestmark = pytest.mark.integration


def _records(out) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted((out / "cells").glob("*.json"))}


def test_two_workers_give_the_cells_of_a_one_by_one_run_on_one_torch_thread(tmp_path):
    grid = load_grid("smoke")
    names = sorted(cell.name for cell in check_grid(grid))
    outcome = run_grid(grid, tmp_path / "workers", progress=False, workers=2)
    assert sorted(outcome.ran) == names and not outcome.failed
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_grid(grid, tmp_path / "serial", progress=False)
    finally:
        torch.set_num_threads(threads)
    side_by_side, one_by_one = _records(tmp_path / "workers"), _records(tmp_path / "serial")
    assert sorted(side_by_side) == names
    for name in names:
        assert side_by_side[name]["status"] == "ok"
        assert side_by_side[name]["torch_threads"] == one_by_one[name]["torch_threads"] == 1, name
        assert side_by_side[name]["metrics"] == one_by_one[name]["metrics"], name
        assert side_by_side[name]["train"]["final_losses"] == one_by_one[name]["train"]["final_losses"], name
    again = run_grid(grid, tmp_path / "workers", progress=False, workers=2)  # finished cells are not redone
    assert sorted(again.skipped) == names and not again.ran


def test_workers_must_be_at_least_one(tmp_path):
    with pytest.raises(ConfigError, match="--workers: must be >= 1, got 0"):
        run_grid(load_grid("smoke"), tmp_path, workers=0)


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(child) for child in path.read_text().split()} if path.exists() else set()


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from Linux's /proc")
def test_sigterm_stops_the_workers_too(tmp_path):
    # Killed by SIGTERM (a scheduler's stop), the grid process used to die alone and leave its workers
    # training on, orphaned. Now it stops them as after Ctrl-C and exits with 128 + 15.
    out = tmp_path / "out"
    command = [sys.executable, "-m", "vlshield", "benchmark", "--grid", "smoke", "--out", str(out)]
    process = subprocess.Popen([*command, "--workers", "2", "--quiet"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "runs").is_dir() or len(_children(process.pid)) < 2:  # the workers run their cells
        assert process.poll() is None and time.monotonic() < deadline, "the workers never started a cell"
        time.sleep(0.2)
    workers = _children(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    time.sleep(1)
    assert [pid for pid in workers if _alive(pid)] == []
