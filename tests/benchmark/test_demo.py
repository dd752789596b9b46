"""``vlshield demo`` end to end (minutes: marked slow): its files, installed backdoors, and pcr removing them."""

from __future__ import annotations

import json

import pytest

from vlshield.benchmark.grid import check_grid, load_grid
from vlshield.cli import main

pytestmark = pytest.mark.slow


def test_demo_writes_its_report_installs_both_backdoors_and_pcr_removes_them(tmp_path, capsys):
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
    metrics = {(record["cell"]["attack"], record["cell"]["defense"]): record["metrics"] for record in records.values()}
    assert len(metrics) == 4
    for attack in ("badnet", "blended"):
        undefended, defended = metrics[attack, "none"], metrics[attack, "pcr"]
        assert undefended["asr"] >= 0.9, (attack, undefended)  # the attack really works
        # clean captioning is learnt: well above always answering the most frequent training caption
        # (CIDEr 436-472 against about 69 at seeds 0-2, docs/results/experiments/demo-budget-64px/)
        assert undefended["cider"] > 3 * undefended["baseline"]["cider"], (attack, undefended)
        assert defended["asr"] <= 0.05, (attack, defended)  # 0.0 % at seeds 0-2
        assert defended["cider"] >= 0.85 * undefended["cider"], (attack, defended)  # 89-105 % at seeds 0-2
