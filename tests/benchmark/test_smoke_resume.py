"""The shipped ``smoke`` grid end to end through the CLI: killed part way, rerun, finished cells not redone."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlshield.benchmark.grid import check_grid, load_grid
from vlshield.cli import main

pytestmark = pytest.mark.integration


def _benchmark(out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "vlshield", "benchmark", "--grid", "smoke", "--out", str(out), "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_first_cell(process: subprocess.Popen, cells: Path, timeout: float = 240.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(cells.glob("*.json")) if cells.is_dir() else []
        if found:
            return found[0]
        if process.poll() is not None:
            pytest.fail(f"benchmark ended before writing a cell: {process.stdout.read()}")
        time.sleep(0.02)
    process.kill()
    pytest.fail("no cell file appeared in time")


def test_smoke_grid_killed_part_way_resumes_without_redoing_finished_cells(tmp_path):
    out = tmp_path / "results"
    names = [cell.name for cell in check_grid(load_grid("smoke"))]
    assert len(names) == 2

    first = _benchmark(out)
    finished = _wait_for_first_cell(first, out / "cells")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert finished.stem == names[0]
    assert sorted(path.stem for path in (out / "cells").glob("*.json")) == [names[0]]  # killed mid-grid
    before = finished.stat().st_mtime_ns, json.loads(finished.read_text())

    second = _benchmark(out)
    output, _ = second.communicate(timeout=240)
    assert second.returncode == 0, output
    assert "1 of 2 cells already finished: skipped" in output
    assert "ran 1, skipped 1 (already done), failed 0" in output
    assert (finished.stat().st_mtime_ns, json.loads(finished.read_text())) == before  # not redone
    records = [json.loads((out / "cells" / f"{name}.json").read_text()) for name in names]
    assert [record["status"] for record in records] == ["ok", "ok"]
    assert records[1]["poison_cached"] is True  # the killed run's poisoned data was reused

    assert main(["report", str(out)]) == 0
    rows = list(csv.DictReader((out / "cells.csv").open()))
    assert sorted(row["name"] for row in rows) == names
    table_rows = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| llava:tiny")]
    assert len(table_rows) == 1
    assert table_rows[0].count("|") == 8 and "–" not in table_rows[0]  # none and pcr both filled in
