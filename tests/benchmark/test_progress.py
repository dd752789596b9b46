"""The grid's progress display with several cells running at once (``--workers``)."""

from __future__ import annotations

from vlshield.benchmark.grid import Cell
from vlshield.benchmark.progress import GridProgress


def _cell(defense: str) -> Cell:
    return Cell("llava:tiny", "caption", "shapes", "badnet", defense, 0.05, 0)


def test_running_cells_keep_their_own_stage_and_the_workers_share_the_remaining_estimate(capsys):
    none, pcr = _cell("none"), _cell("pcr")
    display = GridProgress(2, {none.name: 100.0, pcr.name: 300.0}, enabled=True, workers=2)
    display.start(0, none)
    display.start(1, pcr)
    display.stage("train", pcr.name)
    assert display.running[pcr.name].stage == "train"
    assert display.running[none.name].stage == ""
    # (100 + 300 seconds, less the moments both have run) over 2 workers, before any speed is measured
    assert 199.0 < display.remaining_seconds() <= 200.0
    display.finish(none, {"status": "ok", "metrics": {"asr": 1.0, "cider": 400.0}})
    display.close()
    assert list(display.running) == [pcr.name]
    assert display.done == 1
    printed = capsys.readouterr().out
    assert "[1/2] cell 0: " + none.name in printed
    assert "[2/2] cell 1: " + pcr.name in printed
    assert f"  {pcr.name}: train (" in printed  # a stage line names its cell when cells run side by side
    assert f"  {none.name}: ok: ASR 100.0 %, CIDEr 400.0" in printed
