"""A pcr variant's cells next to default pcr's and the undefended model's, cell by cell.

    python benchmarks/variant_cells.py docs/results docs/results/experiments/no-entropy-vqa \
        [--default docs/results/experiments/no-entropy-vqa/default] [--undefended DIR ...]

BASE holds the default ``pcr`` cells and their undefended (``none``) twins; VARIANT is another
``vlshield benchmark --out`` directory whose ``pcr`` cells ran with other ``defense_options`` (an
experiment grid). Cells pair on model, task, dataset, attack, rate and seed. For each pair the table
gives ASR / clean quality of the undefended run, of default pcr and of the variant, each defended
quality as % of the undefended one, and the flags; then the means over the cells whose undefended
backdoor installed, and the variant-minus-default difference of the quality ratio with a bootstrap
interval over those cells (cells drawn with replacement). Every cell of the variant is compared,
not a chosen few: a variant rerun on the worst cells only looks better by regression to the mean.

The comparison is paired only when default and variant ran the same code path on the same floats:
the same vlshield source (the hash each cell records; the revision for older cells), torch thread
count and CPU instruction set (``cpu_capability``), so that both train alike up to the first step the
variant changes. Cells run on other source, thread count or CPU train apart from the first step, and
their difference holds the whole run-to-run spread. ``--default DIR`` takes the default pcr cells
from a rerun next to the variant's (same source, same ``--workers``, same machine) instead of BASE's,
and ``--undefended DIR ...`` the undefended twins where those dirs hold one (several dirs each, pooled);
the last line says how many pairs share all three (cells record the thread count since 938db01 and
the instruction set since 0d8e533; a pair of cells that both predate a record counts as sharing it).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from pcr_cells import _defended, _flagged, _name, pairs_of  # benchmarks/ is on the path when this script runs

from vlshield.benchmark.report import INSTALLED_ASR, load_results


def compare(
    base: str | Path, variant: str | Path, default: str | Path | list | None = None, undefended: list | None = None
) -> list[dict]:
    """Rows (key, none, pcr, variant) for every variant pcr cell with both twins in ``base`` (its pcr
    twin from ``default`` if given, its undefended twin from ``undefended`` where that has one; each of
    them one directory or several, pooled, a later one's cell replacing an earlier one's)."""
    bases = [base, *(undefended or [])]
    defaults = [default] if isinstance(default, str | Path) else default or [base]
    defaults = {pair["key"]: pair for pair in _variant_pairs(bases, defaults)}
    rows = []
    for pair in _variant_pairs(bases, [variant]):
        twin = defaults.get(pair["key"])
        if twin is not None:
            rows.append({"key": pair["key"], "default": twin, "variant": pair})
    return rows


def _variant_pairs(bases: list, variants: list) -> list[dict]:
    """The pcr cells of ``variants`` (a variant's, or default ones), each with its undefended twin read from
    ``bases`` (directories pooled in order)."""
    undefended = [record for base in bases for record in load_results(base) if record["cell"]["defense"] == "none"]
    defended = [record for one in variants for record in load_results(one) if record["cell"]["defense"] == "pcr"]
    return pairs_of(undefended + defended)


def interval(differences: list[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``differences``, cells drawn with replacement."""
    values = np.asarray(differences)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[draws].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def report(rows: list[dict]) -> str:
    lines = [
        "| cell | undefended ASR / quality | pcr ASR / quality (%) | variant ASR / quality (%) | pcr flags "
        "| variant flags |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        default, variant = row["default"], row["variant"]
        lines.append(
            f"| {_name(default)} | {default['none_asr']:.1f} % / {default['none_quality']:.1f} "
            f"| {_defended(default)} | {_defended(variant)} "
            f"| {_flagged(default['detection'])} | {_flagged(variant['detection'])} |"
        )
    installed = [row for row in rows if row["default"]["none_asr"] >= INSTALLED_ASR]
    lines.append("")
    if not installed:
        lines.append(f"no cell whose undefended backdoor installed (ASR >= {INSTALLED_ASR:g} %)")
        return "\n".join(lines)
    for name in ("default", "variant"):
        ratios = [row[name]["ratio"] for row in installed]
        lines.append(
            f"{name:>7}: {len(installed)} installed cells, mean ASR "
            f"{statistics.fmean(row[name]['asr'] for row in installed):.1f} %, above 15 % in "
            f"{sum(row[name]['asr'] > 15 for row in installed)}; quality {min(ratios):.0f}-{max(ratios):.0f} % "
            f"of undefended (mean {statistics.fmean(ratios):.1f} %), below 98 % in {sum(r < 98 for r in ratios)}"
        )
    differences = [row["variant"]["ratio"] - row["default"]["ratio"] for row in installed]
    low, high = interval(differences)
    lines.append(
        f"variant - default quality ratio: mean {statistics.fmean(differences):+.1f} points "
        f"[{low:+.1f}, {high:+.1f}] (95 %, cells resampled); higher in {sum(d > 0 for d in differences)}, "
        f"lower in {sum(d < 0 for d in differences)} of {len(differences)}"
    )
    paired = sum(row["default"]["run"] == row["variant"]["run"] and bool(row["default"]["run"][0]) for row in rows)
    lines.append(
        "paired (same source, torch thread count and CPU instruction set, where recorded): "
        f"{paired} of {len(rows)} cells"
        + ("" if paired == len(rows) else "; the others differ by training noise as well (see --default)")
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="Results with the default pcr cells and the undefended ones (docs/results).")
    parser.add_argument("variant", help="Results of the variant's pcr cells (an experiment's --out).")
    parser.add_argument(
        "--default", nargs="+", help="Default pcr cells rerun next to the variant's (instead of BASE's; pooled)."
    )
    parser.add_argument(
        "--undefended", nargs="+", default=[], help="Undefended cells rerun next to them (pooled after BASE's)."
    )
    args = parser.parse_args()
    rows = compare(args.base, args.variant, args.default, args.undefended)
    if not rows:
        raise SystemExit(f"no pcr cell of {args.variant} has both a pcr and a none twin in {args.base}")
    print(report(rows))


if __name__ == "__main__":
    main()
