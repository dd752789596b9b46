"""The benchmark report, built from the result files only: a Markdown table, PNG plots and a CSV.

``build_report(results)`` reads ``results/cells/*.json`` and writes (atomically) into the output
directory (default: ``results``):

- ``report.md``: the main table, one row per model x task x attack (x dataset, x rate when the
  results hold several), a column pair per defense: ASR and clean quality (CIDEr-D for
  captioning, VQA accuracy for VQA), with mean rows per task and rate; then the plots and the
  failed cells. Over several seeds a value reads ``mean (worst)``: the mean over seeds and the
  worst seed (highest ASR, lowest quality).
- ``cells.csv``: every cell file, one row each, failed ones included.
- ``plots/asr_by_attack.png`` (grouped bars), ``plots/quality_vs_asr.png`` (scatter) and
  ``plots/asr_vs_rate.png`` (lines; only when some model and task ran at several rates).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlshield.config import ConfigError
from vlshield.storage import atomic_write_text

QUALITY = {"caption": ("cider", "CIDEr"), "vqa": ("vqa_accuracy", "VQA acc.")}
CSV_COLUMNS = (
    "name", "status", "model", "task", "dataset", "attack", "defense", "rate", "seed",
    "asr", "asr_strict", "false_trigger_rate", "cider", "bleu4", "rouge_l", "vqa_accuracy", "exact_match",
    "baseline_quality", "flagged", "detection_precision", "detection_recall",
    "poison_seconds", "train_seconds", "eval_seconds", "error",
)  # fmt: skip
PLOTS = ("asr_by_attack.png", "quality_vs_asr.png", "asr_vs_rate.png")


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the main table: a setting and, per defense, the values over seeds."""

    model: str
    task: str
    dataset: str
    attack: str
    rate: float
    asr: dict[str, list[float]]  # defense -> ASR (%) per seed
    quality: dict[str, list[float]]  # defense -> clean quality per seed
    failed: dict[str, int]  # defense -> failed cells


@dataclasses.dataclass(frozen=True)
class Report:
    """What ``build_report`` wrote and the main table it holds."""

    markdown: Path
    csv: Path
    plots: list[Path]
    table: str


def load_results(results: str | Path) -> list[dict[str, Any]]:
    """Every ``results/cells/*.json``, sorted by name; a ConfigError if there is none."""
    cells = Path(results) / "cells"
    files = sorted(cells.glob("*.json")) if cells.is_dir() else []
    if not files:
        raise ConfigError(f"{results}: no result files in {cells} (run `vlshield benchmark --out {results}` first)")
    return [json.loads(path.read_text()) for path in files]


def table_rows(records: list[dict[str, Any]]) -> list[Row]:
    """Group the records into main-table rows, sorted by task, model, dataset, rate and attack."""
    groups: dict[tuple, dict[str, Any]] = {}
    for record in records:
        cell = record["cell"]
        key = (cell["model"], cell["task"], cell["dataset"], cell["attack"], float(cell["rate"]))
        group = groups.setdefault(key, {"asr": defaultdict(list), "quality": defaultdict(list), "failed": Counter()})
        if record.get("status") != "ok":
            group["failed"][cell["defense"]] += 1
            continue
        asr, quality = headline(record)
        if asr is not None:
            group["asr"][cell["defense"]].append(asr)
        if quality is not None:
            group["quality"][cell["defense"]].append(quality)
    order = sorted(groups, key=lambda key: (key[1], key[0], key[2], key[4], key[3]))  # task, model, dataset, rate
    return [
        Row(
            *key,
            asr=dict(groups[key]["asr"]),
            quality=dict(groups[key]["quality"]),
            failed=dict(groups[key]["failed"]),
        )
        for key in order
    ]


def headline(record: dict[str, Any]) -> tuple[float | None, float | None]:
    """(ASR in %, clean quality) of one ok record."""
    metrics = record["metrics"]
    asr = metrics.get("asr")
    quality = metrics.get(QUALITY[record["cell"]["task"]][0])
    return (None if asr is None else 100 * asr), quality


def defenses_of(records: list[dict[str, Any]]) -> list[str]:
    """Defenses in order of first appearance, ``none`` first."""
    names = list(dict.fromkeys(record["cell"]["defense"] for record in records))
    return sorted(names, key=lambda name: name != "none")


# ---------------------------------------------------------------- the table


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _value(values: list[float], worst: float | None, several: bool) -> str:
    if not values:
        return "–"
    text = f"{statistics.fmean(values):.1f}"
    return f"{text} ({worst:.1f})" if several and worst is not None else text


def _with_failures(text: str, failed: int) -> str:
    if not failed:
        return text
    return "failed" if text == "–" else f"{text}, {failed} failed"


INSTALLED_ASR = 90.0  # below this undefended ASR (%), a row does not measure a defense


def format_table(rows: list[Row], defenses: list[str]) -> str:
    """The main table as Markdown: a column pair (ASR %, quality) per defense, then mean rows per task and rate."""
    several_seeds = any(len(v) > 1 for row in rows for v in row.asr.values())
    show_dataset = len({row.dataset for row in rows}) > 1
    show_rate = len({row.rate for row in rows}) > 1
    head = ["model", "task", *(["dataset"] if show_dataset else []), "attack", *(["rate"] if show_rate else [])]
    columns = [f"{defense} {part}" for defense in defenses for part in ("ASR %", "quality")]
    lines = [_line(head + columns), _line(["---"] * len(head) + ["---:"] * len(columns))]
    for row in rows:
        mark = "" if installed(row) else " †"
        label = [row.model + mark, f"{row.task} ({QUALITY[row.task][1]})"]
        label += [row.dataset] if show_dataset else []
        label += [row.attack] + ([f"{100 * row.rate:g} %"] if show_rate else [])
        values = []
        for defense in defenses:
            asr, quality = row.asr.get(defense, []), row.quality.get(defense, [])
            values.append(
                _with_failures(_value(asr, max(asr, default=None), several_seeds), row.failed.get(defense, 0))
            )
            values.append(_value(quality, min(quality, default=None), several_seeds))
        lines.append(_line(label + values))
    lines += _mean_lines([row for row in rows if installed(row)], defenses, len(head), show_rate, several_seeds)
    return "\n".join(lines)


def installed(row: Row) -> bool:
    """Whether the undefended backdoor installed (mean ASR >= INSTALLED_ASR %); rows without a ``none`` cell count."""
    undefended = row.asr.get("none")
    return not undefended or statistics.fmean(undefended) >= INSTALLED_ASR


def _mean_lines(rows: list[Row], defenses: list[str], width: int, show_rate: bool, several: bool) -> list[str]:
    """One mean row per task (and rate): the mean over rows of each row's mean (and of each row's worst)."""
    lines = []
    for task, rate in dict.fromkeys((row.task, row.rate) for row in rows):
        group = [row for row in rows if row.task == task and row.rate == rate]
        label = f"**mean** ({task}" + (f", {100 * rate:g} %)" if show_rate else ")")
        values = []
        for defense in defenses:
            asr = [statistics.fmean(row.asr[defense]) for row in group if row.asr.get(defense)]
            worst_asr = [max(row.asr[defense]) for row in group if row.asr.get(defense)]
            quality = [statistics.fmean(row.quality[defense]) for row in group if row.quality.get(defense)]
            worst_quality = [min(row.quality[defense]) for row in group if row.quality.get(defense)]
            values.append(_value(asr, _mean(worst_asr), several))
            values.append(_value(quality, _mean(worst_quality), several))
        lines.append(_line([label] + [""] * (width - 1) + values))
    return lines


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# ---------------------------------------------------------------- CSV and Markdown


def cells_csv(records: list[dict[str, Any]]) -> str:
    """One CSV row per result file (ASR and rates as fractions, quality on the 0-100 scale).

    ``flagged`` and ``detection_*``: for a detecting defense, how many training samples it flagged
    and the precision and recall of the flags against the poison index (``metrics["detection"]``).
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        metrics, timings = record.get("metrics") or {}, record.get("timings") or {}
        quality_key = QUALITY[record["cell"]["task"]][0]
        row = {"name": record["name"], "status": record.get("status"), **record["cell"], "error": record.get("error")}
        row.update({key: metrics.get(key) for key in CSV_COLUMNS if key in metrics})
        row["baseline_quality"] = (metrics.get("baseline") or {}).get(quality_key)
        detection = metrics.get("detection") or {}
        row.update(flagged=detection.get("flagged"), detection_precision=detection.get("precision"))
        row["detection_recall"] = detection.get("recall")
        row.update({key: timings.get(key) for key in ("poison_seconds", "train_seconds", "eval_seconds")})
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in CSV_COLUMNS})
    return buffer.getvalue()


def build_report(results: str | Path, out: str | Path | None = None) -> Report:
    """Read ``results/cells/*.json``; write ``report.md``, ``cells.csv`` and ``plots/*.png`` into ``out``."""
    from vlshield.benchmark.plots import write_plots

    records = load_results(results)
    out = Path(out) if out is not None else Path(results)
    rows, defenses = table_rows(records), defenses_of(records)
    table = format_table(rows, defenses)
    plots = write_plots(rows, defenses, out / "plots")
    csv_path = out / "cells.csv"
    atomic_write_text(csv_path, cells_csv(records))
    markdown = out / "report.md"
    atomic_write_text(markdown, _markdown(records, table, plots, out))
    return Report(markdown=markdown, csv=csv_path, plots=plots, table=table)


def _counted(names: Iterable[str]) -> str:
    """'a (2), b (1)': each distinct name once, sorted, with how many times it occurs."""
    counts = Counter(names)
    return ", ".join(f"{name} ({counts[name]})" for name in sorted(counts))


def _markdown(records: list[dict[str, Any]], table: str, plots: list[Path], out: Path) -> str:
    ok = [record for record in records if record.get("status") == "ok"]
    failed = [record for record in records if record.get("status") != "ok"]
    seeds = sorted({record["cell"]["seed"] for record in ok})
    grids = _counted(str(record.get("grid")) for record in records)
    revisions = _counted(str(record.get("git_revision"))[:10] for record in records)
    versions = sorted({(record.get("versions") or {}).get("vlshield", "?") for record in records})
    seconds = {
        key: sum((record.get("timings") or {}).get(key, 0.0) for record in records)
        for key in ("poison_seconds", "train_seconds", "eval_seconds")
    }
    text = [
        "# vlshield benchmark report",
        "",
        f"{len(records)} cells ({len(ok)} ok, {len(failed)} failed) from grid(s) {grids}; "
        f"vlshield {', '.join(versions)}, git {revisions}. Compute: poison {seconds['poison_seconds']:.0f} s, "
        f"train {seconds['train_seconds']:.0f} s, evaluate {seconds['eval_seconds']:.0f} s.",
        "",
        "## Main table",
        "",
        "ASR: attack success rate on triggered test inputs, % (lower is better). Quality: clean-input CIDEr-D for "
        "captioning, VQA accuracy (%) for VQA (higher is better). "
        + (
            f"Seeds {', '.join(map(str, seeds))}: each value is the mean over seeds and, in parentheses, the worst "
            "seed (highest ASR, lowest quality); mean rows average the rows' means (and their worst)."
            if len(seeds) > 1
            else f"Seed {', '.join(map(str, seeds))}."
        ),
        "",
        table,
        "",
        f"† The undefended backdoor did not install (ASR below {INSTALLED_ASR:g} %), so the row measures no "
        "defense; mean rows leave such rows out. A mean row averages each defense over the rows that have it.",
        "",
        "## Plots",
        "",
    ]
    titles = {
        "asr_by_attack.png": "ASR per attack and defense",
        "quality_vs_asr.png": "Clean quality vs ASR",
        "asr_vs_rate.png": "ASR vs poisoning rate",
    }
    for path in plots:
        text += [f"![{titles.get(path.name, path.stem)}]({path.relative_to(out).as_posix()})", ""]
    if not any(path.name == "asr_vs_rate.png" for path in plots):
        text += ["(No model and task ran at several poisoning rates, so there is no ASR-vs-rate plot.)", ""]
    text += ["## Every cell", "", "`cells.csv`: one row per result file, failed cells included.", ""]
    if failed:
        text += ["## Failed cells", "", "Rerunning the benchmark retries them.", ""]
        text += [f"- `{record['name']}` ({record.get('stage')}): {record.get('error')}" for record in failed]
        text.append("")
    return "\n".join(text)
