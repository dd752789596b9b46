"""``vlshield demo`` end to end (minutes: marked slow): the files it promises and an installed backdoor."""

from __future__ import annotations

import json

import pytest

from vlshield.benchmark.grid import check_grid, load_grid
from vlshield.cli import main

pytestmark = pytest.mark.slow


def test_demo_writes_its_report_and_the_undefended_backdoor_installs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    cells = check_grid(load_grid("demo"))
    records = {cell.name: json.loads((out / "cells" / f"{cell.name}.json").read_text()) for cell in cells}
    assert all(record["status"] == "ok" for record in records.values())
    for name in ("report.md", "cells.csv", "plots/asr_by_attack.png", "plots/quality_vs_asr.png"):
        assert (out / name).is_file()
        assert str(out / name) in printed or name == "cells.csv"
    assert "| llava:tiny | caption (CIDEr) |" in printed
    undefended = [record["metrics"] for name, record in records.items() if record["cell"]["defense"] == "none"]
    assert all(metrics["asr"] >= 0.9 for metrics in undefended), undefended  # the attack really works
    # the task is learnt, if weakly at this budget (CIDEr 90-145 here, thread count changing the numbers):
    # above always answering the most frequent training response
    assert all(metrics["cider"] > 1.2 * metrics["baseline"]["cider"] for metrics in undefended)
