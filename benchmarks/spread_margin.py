"""How improbable, by chance, are the flags a word run collects? The margin behind ``spread_significance``.

At each epoch end of a pcr run, after the scores have added their flags and before the spread, every
word run (``shared_words`` words) with two or more flagged carriers, at least ``run_prevalence`` of the
flags among its carriers, and fewer than ``response_share`` of its carriers flagged (the share rule
leaves it: only such runs does ``spread_significance`` spread) gets -log10 of the chance that flags
falling regardless of words would flag so many of its carriers (``hypergeometric_tail``). The runs are then
sorted by the poison flags, read after the run (an evaluation, not a defense): clean (no poisoned
carrier), target (nine in ten carriers or more poisoned) and mixed. Per run printed: the most
improbable clean and mixed runs over all epoch ends, and the first epoch end at which a target run
passes ``--significance`` next to the first at which pcr's recorded spread (its ``response_share``)
added a flag. Reads result cells or run directories whose record names its indices (since 3236914)::

    python benchmarks/spread_margin.py docs/results docs/results/experiments/*/ [--plot margin.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

# benchmarks/ is on the path when this script runs
from replay_spread import names_indices, read_record, record_samples, recorded_config, records

from vlshield.defenses.detection import hypergeometric_tail, word_runs
from vlshield.defenses.pcr import PCRConfig


def margins(config: PCRConfig, summary: dict, samples: list) -> list[dict]:
    """Per epoch end: the most improbable clean, mixed and target runs (-log10 p; 0 if none qualifies)."""
    poisoned = np.array([bool(sample.meta.get("poisoned")) for sample in samples])
    carriers, runs = word_runs([sample.response for sample in samples], config.shared_words)
    held = np.bincount(runs)
    bad = np.bincount(runs, weights=poisoned[carriers], minlength=len(held))
    kinds = np.where(bad == 0, "clean", np.where(bad >= 0.9 * held, "target", "mixed"))
    flagged = np.zeros(len(samples), dtype=bool)
    epochs = []
    for record in summary["detections"]:
        flagged[record["outlier_indices"]] = True
        flags = int(flagged.sum())
        hits = np.bincount(runs, weights=flagged[carriers], minlength=len(held))
        row = {"epoch": record["epoch"], "flags": flags, "spread": len(record["spread_indices"])}
        row.update({kind: 0.0 for kind in ("clean", "mixed", "target")})
        # Runs the share rule leaves: only there does spread_significance add anything.
        left = (
            (hits >= np.maximum(2, config.run_prevalence * flags))
            & (hits < held)
            & (hits < config.response_share * held)
        )
        for run in np.flatnonzero(left):
            tail = hypergeometric_tail(int(hits[run]), len(samples), flags, int(held[run]))
            row[kinds[run]] = max(row[kinds[run]], tail)
        epochs.append(row)
        flagged[record["spread_indices"]] = True
    return epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", type=Path, nargs="+", help="result dirs (cells/ or runs/), cells or runs")
    parser.add_argument("--significance", type=float, default=12.0, help="-log10 p a target run is read at")
    parser.add_argument(
        "--data-cache", type=Path, help="where cells' data is made again (default: a temporary directory)"
    )
    parser.add_argument("--plot", type=Path, help="a PNG of the clean runs' maxima against the target runs'")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        summarise(args, args.data_cache or Path(tmp))


def summarise(args: argparse.Namespace, cache: Path) -> None:
    """Prints a line per pcr record of ``args.paths``, then the most improbable clean and mixed runs."""
    worst = {"clean": (0.0, ""), "mixed": (0.0, "")}
    clean_maxima, target_before = [], []
    for path in (record for given in args.paths for record in records(given)):
        config, summary = read_record(path)
        if not names_indices(summary):
            continue  # recorded before 3236914: its data is not made again for nothing
        samples = record_samples(path, config, cache)
        name = f"{path.parent.parent.name}/{path.name.removesuffix('.json')}"
        epochs = margins(recorded_config(config, summary), summary, samples)
        line = []
        for kind in ("clean", "mixed"):
            top = max((row[kind] for row in epochs), default=0.0)
            worst[kind] = max(worst[kind], (top, name))
            line.append(f"{kind} {top:5.1f}")
        clean_maxima.append(max((row["clean"] for row in epochs), default=0.0))
        passing = next((row for row in epochs if row["target"] >= args.significance), None)
        spread = next((row["epoch"] for row in epochs if row["spread"]), None)
        # What a target run showed before the share rule spread it (or at all, if it never did).
        before = [row["target"] for row in epochs if spread is None or row["epoch"] <= spread]
        if max(before, default=0.0) > 0:
            target_before.append(max(before))
        if passing is not None:
            line.append(f"target >= {args.significance:g} at epoch {passing['epoch']} ({passing['flags']} flags)")
        line.append(f"recorded spread from epoch {spread}" if spread is not None else "recorded spread never")
        print(f"{name}: " + "; ".join(line))
        sys.stdout.flush()
    for kind, (top, name) in worst.items():
        print(f"most improbable {kind} run: -log10 p = {top:.1f} ({name or 'none'})")
    if args.plot:
        plot(clean_maxima, target_before, args.significance, args.plot)


def plot(clean: list[float], target: list[float], significance: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    bins = np.linspace(0, 61, 41)
    axes.hist(
        np.minimum(clean, 60), bins=bins, alpha=0.7, label=f"most improbable clean run, per pcr run ({len(clean)})"
    )
    axes.hist(
        np.minimum(target, 60),
        bins=bins,
        alpha=0.7,
        label=f"target run, up to the share rule's spread ({len(target)})",
    )
    axes.axvline(significance, color="black", linestyle="--", label=f"spread_significance {significance:g}")
    axes.set_xlabel("-log10 p of a run's flagged carriers, flags falling regardless of words (60: 60 or more)")
    axes.set_ylabel("pcr runs")
    axes.set_yscale("log")
    axes.legend(fontsize=7)
    figure.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=120)
    tmp.replace(out)


if __name__ == "__main__":
    main()
