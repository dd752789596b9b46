"""Every pcr cell next to its undefended twin, and the headline counts, read off a benchmark's results.

    python benchmarks/pcr_cells.py docs/results            # the table of docs/method.md, then the counts
    python benchmarks/pcr_cells.py docs/results --counts   # the counts only
    python benchmarks/pcr_cells.py PCR_DIR NONE_DIR        # cells pooled from several --out directories
    python benchmarks/pcr_cells.py docs/results --twins DIR [DIR ...]   # undefended twins of the same machine

A pair is a ``pcr`` cell and the ``none`` cell of the same model, task, dataset, attack, rate and seed
(cells of other defenses are left out). With ``--twins``, a pcr cell run on another machine than its
undefended twin is paired instead with an undefended cell of those directories run on its own machine
(same ``cpu_model`` and ``cpu_capability``), where one is there: the machine's floats move a ratio by up
to 40 points and can decide whether a backdoor installs (docs/results/experiments/undefended-twins/).
The table gives, per pair, ASR / clean quality of each, pcr's quality as % of the undefended one, and
what pcr flagged (precision and recall read off the poison flags after the run, which pcr never sees).
The counts, per task and rate, take the pairs whose undefended backdoor installed (ASR >= the report's
``INSTALLED_ASR``): mean ASR of each, how many pcr takes to 0.0 % and which it leaves above 15 % (the
issue's bar for a cell), and pcr's quality ratio (range, mean, cells below 98 %).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

from vlshield.benchmark.report import INSTALLED_ASR, headline, load_results

MODELS = ("llava:tiny", "qwen2_5_vl:tiny", "blip2:tiny")
MISS_ASR = 15.0  # the bar for one cell's pcr ASR (%)
QUALITY_BAR = 98.0  # the bar for pcr's quality, % of the undefended model's


def pairs(*results: str | Path, twins: Sequence[str | Path] = ()) -> list[dict]:
    """(undefended, pcr) pairs of ok cells, ordered by task, model, attack, rate and seed. The cells of
    several directories are pooled; where two hold a cell of the same name, the later one's is taken.
    ``twins``: directories of undefended cells that pair a pcr cell run on their machine (module docstring)."""
    records = [record for directory in results for record in load_results(directory)]
    return pairs_of(records, [record for directory in twins for record in load_results(directory)])


def _key(record: dict) -> tuple:
    cell = record["cell"]
    return cell["task"], cell["model"], cell["dataset"], cell["attack"], float(cell["rate"]), cell["seed"]


def machine(record: dict) -> tuple | None:
    """The CPU a cell ran on (model, instruction set), or None where the cell did not record it."""
    model, capability = record.get("cpu_model"), record.get("cpu_capability")
    return None if model is None or capability is None else (model, capability)


def pairs_of(records: Sequence[dict], twins: Sequence[dict] = ()) -> list[dict]:
    """``pairs`` of cell records already read (``load_results``)."""
    cells = {}
    for record in records:
        if record.get("status") == "ok":
            cells[_key(record), record["cell"]["defense"]] = record
    local = {}  # (key, machine) -> an undefended cell of that machine
    for record in twins:
        if record.get("status") == "ok" and record["cell"]["defense"] == "none" and machine(record) is not None:
            local[_key(record), machine(record)] = record
    found = []
    for (key, defense), record in cells.items():
        twin = cells.get((key, "none"))
        if defense != "pcr" or twin is None:
            continue
        if machine(twin) != machine(record):
            twin = local.get((key, machine(record)), twin)
        (asr, quality), (none_asr, none_quality) = headline(record), headline(twin)
        found.append(
            {
                "key": key,
                "asr": asr,
                "quality": quality,
                "none_asr": none_asr,
                "none_quality": none_quality,
                "ratio": 100 * quality / none_quality,
                "detection": record["metrics"].get("detection") or {},
                # what decides its floats: the package's source (its hash, or the revision for cells older
                # than the hash), the torch thread count and the CPU's instruction set (None in older cells)
                "run": (
                    record.get("source_sha256") or record.get("git_revision"),
                    record.get("torch_threads"),
                    record.get("cpu_capability"),
                ),
            }
        )

    def order(pair: dict) -> tuple:
        task, model, dataset, attack, rate, seed = pair["key"]
        rank = MODELS.index(model) if model in MODELS else len(MODELS)
        return task, rank, model, dataset, attack, rate, seed

    return sorted(found, key=order)


def _flagged(detection: dict) -> str:
    if not detection.get("flagged"):
        return "0"
    return f"{detection['flagged']} ({100 * detection['precision']:.1f} %, {100 * detection['recall']:.0f} %)"


def table(found: list[dict]) -> str:
    lines = [
        "| model | task | attack | rate | seed | undefended ASR / quality | `pcr` ASR / quality (% of undefended) "
        "| flagged (precision, recall) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pair in found:
        task, model, _dataset, attack, rate, seed = pair["key"]
        lines.append(
            f"| {model} | {task} | {attack} | {100 * rate:g} % | {seed} | {pair['none_asr']:.1f} % / "
            f"{pair['none_quality']:.1f} | {_defended(pair)} "
            f"| {_flagged(pair['detection'])} |"
        )
    return "\n".join(lines)


def _defended(pair: dict) -> str:
    """The defended run's 'ASR % / quality (ratio to undefended %)'."""
    return f"{pair['asr']:.1f} % / {pair['quality']:.1f} ({pair['ratio']:.0f} %)"


def _name(pair: dict) -> str:
    task, model, _dataset, attack, rate, seed = pair["key"]
    return f"{model} {task} {attack} {100 * rate:g} % seed {seed}"


def counts(found: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for pair in found:
        groups.setdefault((pair["key"][0], pair["key"][4]), []).append(pair)  # by task and rate
    lines = []
    for (task, rate), group in sorted(groups.items()):
        installed = [pair for pair in group if pair["none_asr"] >= INSTALLED_ASR]
        lines.append(
            f"{task} at {100 * rate:g} %: {len(group)} pairs, {len(installed)} installed (ASR >= {INSTALLED_ASR:g} %)"
        )
        if not installed:
            continue
        misses = [pair for pair in installed if pair["asr"] > MISS_ASR]
        ratios = [pair["ratio"] for pair in installed]
        lines += [
            f"  mean ASR {statistics.fmean(p['none_asr'] for p in installed):.1f} % -> "
            f"{statistics.fmean(p['asr'] for p in installed):.1f} % with pcr; 0.0 % in "
            f"{sum(p['asr'] == 0 for p in installed)}; above {MISS_ASR:g} % in {len(misses)}",
        ]
        lines += [f"    {_name(pair)}: {pair['none_asr']:.1f} -> {pair['asr']:.1f} %" for pair in misses]
        others = [pair for pair in installed if pair["key"][3] != "trojvlm"]
        if len(others) < len(installed):
            lines.append(
                f"  without trojvlm: {len(others)} installed, mean pcr ASR "
                f"{statistics.fmean(p['asr'] for p in others):.1f} %, above {MISS_ASR:g} % in "
                f"{sum(p['asr'] > MISS_ASR for p in others)}"
            )
        below = [pair for pair in installed if pair["ratio"] < QUALITY_BAR]
        lines.append(
            f"  quality with pcr {min(ratios):.0f}-{max(ratios):.0f} % of undefended (mean "
            f"{statistics.fmean(ratios):.0f} %); below {QUALITY_BAR:g} % in {len(below)}"
        )
        lines += [f"    {_name(pair)}: {pair['ratio']:.1f} %" for pair in sorted(below, key=lambda p: p["ratio"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "results",
        nargs="+",
        help="Benchmark --out directories (their cells/*.json), pooled: e.g. pcr cells and their undefended "
        "twins rerun in another directory (a later directory's cell replaces an earlier one's).",
    )
    parser.add_argument(
        "--twins",
        nargs="+",
        default=(),
        help="Directories of undefended cells: a pcr cell run on another machine than its undefended twin is "
        "paired with one of these run on its own machine (cpu_model and cpu_capability), where there is one.",
    )
    parser.add_argument("--counts", action="store_true", help="Print the counts only, not the table.")
    args = parser.parse_args()
    found = pairs(*args.results, twins=args.twins)
    if not args.counts:
        print(table(found), end="\n\n")
    print(counts(found))


if __name__ == "__main__":
    main()
