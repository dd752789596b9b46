"""The report from hand-made result files: table values and means checkable by hand, CSV, plots, Markdown."""

from __future__ import annotations

import csv
import dataclasses

import pytest

from vlshield.benchmark.grid import Cell
from vlshield.benchmark.report import build_report
from vlshield.cli import main
from vlshield.storage import atomic_write_json

QUALITY_KEY = {"caption": "cider", "vqa": "vqa_accuracy"}
PNG = b"\x89PNG\r\n\x1a\n"


def _write(results, model, task, attack, defense, rate, seed, asr=None, quality=None, failed=False):
    cell = Cell(model, task, "shapes", attack, defense, rate, seed)
    record = {
        "name": cell.name,
        "grid": "hand",
        "cell": dataclasses.asdict(cell),
        "status": "failed" if failed else "ok",
        "timings": {"poison_seconds": 1.0, "train_seconds": 10.0, "eval_seconds": 2.0},
        "git_revision": "abc1234def",
        "versions": {"vlshield": "0.1.0"},
    }
    if failed:
        record.update(stage="train", error="RuntimeError: out of patience")
    else:
        key = QUALITY_KEY[task]
        record["metrics"] = {"asr": asr, "asr_strict": asr, "false_trigger_rate": 0.0, key: quality,
                             "baseline": {key: 5.0}}  # fmt: skip
        if defense == "pcr":
            record["metrics"]["detection"] = {"flagged": 4, "poisoned": 5, "precision": 0.75, "recall": 0.6}
    atomic_write_json(results / "cells" / f"{cell.name}.json", record)


@pytest.fixture
def results(tmp_path):
    """Two seeds of llava captioning (badnet, blended) and VQA (badnet), none vs pcr; one failed VQA cell."""
    results = tmp_path / "results"
    for seed, asr, cider in ((0, 0.9, 300), (1, 1.0, 320)):
        _write(results, "llava:tiny", "caption", "badnet", "none", 0.05, seed, asr, cider)
    for seed, asr, cider in ((0, 0.1, 280), (1, 0.3, 290)):
        _write(results, "llava:tiny", "caption", "badnet", "pcr", 0.05, seed, asr, cider)
    for seed, asr, cider in ((0, 0.8, 310), (1, 0.6, 310)):
        _write(results, "llava:tiny", "caption", "blended", "none", 0.05, seed, asr, cider)
    for seed, asr, cider in ((0, 0.0, 300), (1, 0.0, 280)):
        _write(results, "llava:tiny", "caption", "blended", "pcr", 0.05, seed, asr, cider)
    for seed, asr, accuracy in ((0, 1.0, 80), (1, 1.0, 90)):
        _write(results, "llava:tiny", "vqa", "badnet", "none", 0.05, seed, asr, accuracy)
    _write(results, "llava:tiny", "vqa", "badnet", "pcr", 0.05, 0, 0.5, 70)
    _write(results, "llava:tiny", "vqa", "badnet", "pcr", 0.05, 1, failed=True)
    return results


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_main_table_values_and_means_are_the_hand_computed_ones(results):
    report = build_report(results)
    lines = [_cells(line) for line in report.table.splitlines()]
    assert lines[0] == ["model", "task", "attack", "none ASR %", "none quality", "pcr ASR %", "pcr quality"]
    # mean over seeds (worst seed: highest ASR, lowest quality)
    assert lines[2] == ["llava:tiny", "caption (CIDEr)", "badnet", "95.0 (100.0)", "310.0 (300.0)", "20.0 (30.0)",
                        "285.0 (280.0)"]  # fmt: skip
    # blended's undefended mean ASR 70 % < 90 %: the backdoor did not install, the row is marked
    assert lines[3] == ["llava:tiny †", "caption (CIDEr)", "blended", "70.0 (80.0)", "310.0 (310.0)", "0.0 (0.0)",
                        "290.0 (280.0)"]  # fmt: skip
    assert lines[4] == ["llava:tiny", "vqa (VQA acc.)", "badnet", "100.0 (100.0)", "85.0 (80.0)",
                        "50.0 (50.0), 1 failed", "70.0 (70.0)"]  # fmt: skip
    # mean rows: the mean of the rows' means (and of their worst), per task, over installed rows only
    # (caption: badnet alone, blended is left out)
    assert lines[5] == ["**mean** (caption)", "", "", "95.0 (100.0)", "310.0 (300.0)", "20.0 (30.0)", "285.0 (280.0)"]
    assert lines[6] == ["**mean** (vqa)", "", "", "100.0 (100.0)", "85.0 (80.0)", "50.0 (50.0)", "70.0 (70.0)"]
    assert len(lines) == 7


def test_csv_has_one_row_per_result_file(results):
    report = build_report(results)
    rows = list(csv.DictReader(report.csv.open()))
    assert len(rows) == 12
    row = next(r for r in rows if r["name"] == "llava_tiny--caption--badnet--pcr--0.05--1")
    assert (row["status"], row["asr"], row["cider"], row["vqa_accuracy"], row["baseline_quality"]) == (
        "ok", "0.3", "290", "", "5.0",
    )  # fmt: skip
    assert (row["flagged"], row["detection_precision"], row["detection_recall"]) == ("4", "0.75", "0.6")
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["name"] == "llava_tiny--vqa--badnet--pcr--0.05--1"
    assert failed["error"] == "RuntimeError: out of patience" and failed["asr"] == ""


def test_markdown_holds_the_table_the_plots_and_the_failures(results):
    report = build_report(results)
    text = report.markdown.read_text()
    assert report.markdown == results / "report.md"
    assert report.table in text
    assert "12 cells (11 ok, 1 failed)" in text and "Seeds 0, 1" in text
    assert "from grid(s) hand (12);" in text and "git abc1234def (12)." in text
    assert [path.name for path in report.plots] == ["asr_by_attack.png", "quality_vs_asr.png"]
    for path in report.plots:
        assert path.read_bytes().startswith(PNG)
        assert f"](plots/{path.name})" in text
    assert "no ASR-vs-rate plot" in text
    assert "`llava_tiny--vqa--badnet--pcr--0.05--1` (train): RuntimeError: out of patience" in text


def test_several_rates_get_a_rate_column_per_rate_means_and_the_rate_plot(results):
    for seed, asr in ((0, 0.5), (1, 0.7)):
        _write(results, "llava:tiny", "caption", "badnet", "none", 0.01, seed, asr, 330)
        _write(results, "llava:tiny", "caption", "badnet", "pcr", 0.01, seed, 0.0, 320)
    report = build_report(results)
    lines = [_cells(line) for line in report.table.splitlines()]
    assert lines[0][:5] == ["model", "task", "attack", "rate", "none ASR %"]
    assert lines[2] == ["llava:tiny †", "caption (CIDEr)", "badnet", "1 %", "60.0 (70.0)", "330.0 (330.0)",
                        "0.0 (0.0)", "320.0 (320.0)"]  # fmt: skip
    assert "**mean** (caption, 1 %)" not in report.table  # its one row did not install
    assert "| **mean** (caption, 5 %) |  |  |  | 95.0 (100.0) |" in report.table
    assert report.plots[-1].name == "asr_vs_rate.png" and report.plots[-1].read_bytes().startswith(PNG)


def test_cli_report_writes_to_out_and_prints_the_table(results, tmp_path, capsys):
    assert main(["report", str(results), "--out", str(tmp_path / "elsewhere")]) == 0
    printed = capsys.readouterr().out
    assert "| llava:tiny | caption (CIDEr) | badnet | 95.0 (100.0)" in printed
    for name in ("report.md", "cells.csv", "plots/asr_by_attack.png", "plots/quality_vs_asr.png"):
        assert (tmp_path / "elsewhere" / name).is_file()
    assert not (results / "report.md").exists()


def test_cli_report_without_results_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no result files" in capsys.readouterr().err
