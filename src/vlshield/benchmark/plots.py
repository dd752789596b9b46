"""The report's PNG plots (matplotlib, Agg backend), each written atomically.

Every plot reads the main table's rows (``report.Row``), so the numbers match the table:

- ``asr_by_attack.png``: grouped bars, one group per attack, one bar per defense; one panel per
  task; the height is the mean ASR over models and seeds at each task's main rate (the rate
  with the most rows).
- ``quality_vs_asr.png``: one point per row and defense (mean over seeds), ASR on x and clean
  quality on y; one panel per task, since the quality metrics differ.
- ``asr_vs_rate.png``: for each model and task run at several rates, mean ASR over attacks
  against the rate, one line per defense. Not written when no model and task has several rates.
"""

from __future__ import annotations

import io
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from vlshield.storage import atomic_write_bytes

QUALITY_LABEL = {"caption": "CIDEr-D", "vqa": "VQA accuracy (%)"}


def write_plots(rows: list[Any], defenses: list[str], folder: Path) -> list[Path]:
    """Write the plots into ``folder``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    paths = [
        _save(_asr_by_attack(rows, defenses), folder / "asr_by_attack.png"),
        _save(_quality_vs_asr(rows, defenses), folder / "quality_vs_asr.png"),
    ]
    by_rate = _asr_vs_rate(rows, defenses)
    if by_rate is not None:
        paths.append(_save(by_rate, folder / "asr_vs_rate.png"))
    return paths


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _panels(count: int, width: float = 5.0) -> tuple[Any, list[Any]]:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, count, figsize=(width * count, 3.8), squeeze=False)
    return figure, list(axes[0])


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def main_rate(rows: list[Any], task: str) -> float:
    """The rate with the most rows of ``task`` (ties: the first seen)."""
    return Counter(row.rate for row in rows if row.task == task).most_common(1)[0][0]


def _asr_by_attack(rows: list[Any], defenses: list[str]) -> Any:
    tasks = list(dict.fromkeys(row.task for row in rows))
    figure, axes = _panels(len(tasks), width=max(5.0, 1.2 * len({row.attack for row in rows})))
    for axis, task in zip(axes, tasks, strict=True):
        rate = main_rate(rows, task)
        group = [row for row in rows if row.task == task and row.rate == rate]
        attacks = list(dict.fromkeys(row.attack for row in group))
        width = 0.8 / max(1, len(defenses))
        for d, defense in enumerate(defenses):
            heights = [
                _mean([v for row in group if row.attack == attack for v in row.asr.get(defense, [])])
                for attack in attacks
            ]
            offset = (d - (len(defenses) - 1) / 2) * width
            bars = axis.bar([a + offset for a in range(len(attacks))], heights, width, label=defense)
            axis.bar_label(bars, fmt="%.0f", fontsize="x-small")
        axis.set_xticks(range(len(attacks)), attacks)
        axis.set_ylim(0, 110)
        axis.set_ylabel("ASR (%)")
        axis.set_title(f"{task}, {100 * rate:g} % poisoned")
        axis.legend(title="defense", fontsize="small")
    figure.suptitle("ASR per attack and defense (mean over models and seeds)")
    return figure


def _quality_vs_asr(rows: list[Any], defenses: list[str]) -> Any:
    tasks = list(dict.fromkeys(row.task for row in rows))
    figure, axes = _panels(len(tasks))
    markers = "os^Dv<>P*X"
    for axis, task in zip(axes, tasks, strict=True):
        group = [row for row in rows if row.task == task]
        for d, defense in enumerate(defenses):
            points = [
                (_mean(row.asr[defense]), _mean(row.quality[defense]))
                for row in group
                if row.asr.get(defense) and row.quality.get(defense)
            ]
            if points:
                axis.scatter(*zip(*points, strict=True), label=defense, marker=markers[d % len(markers)], alpha=0.8)
        axis.set_xlim(-3, 103)
        axis.set_xlabel("ASR (%)")
        axis.set_ylabel(f"clean {QUALITY_LABEL.get(task, 'quality')}")
        axis.set_title(task)
        axis.legend(title="defense", fontsize="small")
    figure.suptitle("Clean quality vs ASR (one point per model x attack x rate; best: top left)")
    return figure


def _asr_vs_rate(rows: list[Any], defenses: list[str]) -> Any | None:
    settings = [
        (model, task)
        for model, task in dict.fromkeys((row.model, row.task) for row in rows)
        if len({row.rate for row in rows if row.model == model and row.task == task}) > 1
    ]
    if not settings:
        return None
    figure, axes = _panels(len(settings))
    for axis, (model, task) in zip(axes, settings, strict=True):
        group = [row for row in rows if row.model == model and row.task == task]
        rates = sorted({row.rate for row in group})
        for defense in defenses:
            means = [
                _mean([_mean(row.asr[defense]) for row in group if row.rate == rate and row.asr.get(defense)])
                for rate in rates
            ]
            axis.plot([100 * rate for rate in rates], means, marker="o", label=defense)
        axis.set_xlabel("poisoning rate (%)")
        axis.set_ylabel("ASR (%), mean over attacks")
        axis.set_ylim(0, 105)
        axis.set_title(f"{model}, {task}")
        axis.legend(title="defense", fontsize="small")
    figure.suptitle("ASR vs poisoning rate")
    return figure
