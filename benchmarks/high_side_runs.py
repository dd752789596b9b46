"""A candidate rule replayed on a run's score history: HIGH-side log-ratio outliers, kept only through a
word run they dominate.

A backdoor that installs weakly leaves its target explained by the text as well as by the image, so
its poisoned samples sit on the high side of pcr's log-ratio (llava:tiny sig 60/255, seed 2). This
rule would flag the high-side outliers (more than 3.5 robust SDs above the median, per task, at most
15 % of it; tasks of short answers, median at most 3 words, are left out: pcr reads them by their
evidence) that hold a run of 4 words that high-side outliers make up at least ``--share`` of the
carriers of, ``--min-count`` at least. pcr does NOT use it (docs/method.md, Open). Train with the
score history, then replay::

    vlshield train --data D --model llava:tiny --defense pcr --out R \\
        defense_options.suppress=false defense_options.keep_score_history=true
    python benchmarks/high_side_runs.py R --data D

Prints per epoch end: high-side outliers / poisoned among them -> kept by the rule / poisoned, and
the largest share a run held only by clean samples reaches (its outliers / carriers), the margin
the rule stands on. Reads the poison flags: an evaluation, not a defense.
"""

from __future__ import annotations

import argparse

import numpy as np
from score_gap import load_history  # benchmarks/ is on the path when this script runs

from vlshield.defenses.detection import robust_z, word_runs


def high_side(scores: np.ndarray, tasks: np.ndarray, threshold: float = 3.5, max_fraction: float = 0.15) -> np.ndarray:
    """[n] bool: scores more than ``threshold`` robust SDs above their task's median (none in a task
    where more than ``max_fraction`` would be)."""
    found = np.zeros(len(scores), dtype=bool)
    for task in np.unique(tasks):
        rows = np.flatnonzero((tasks == task) & ~np.isnan(scores))
        z = robust_z(scores[rows])
        if (z > threshold).sum() <= max_fraction * len(rows):
            found[rows[z > threshold]] = True
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run trained with keep_score_history=true (suppress=false)")
    parser.add_argument("--data", required=True, help="its poisoned dataset directory")
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--min-count", type=int, default=5)
    args = parser.parse_args()
    history, samples, poisoned, tasks = load_history(args.run, args.data)
    words = np.array([len(s.response.split()) for s in samples])
    long_tasks = [task for task in np.unique(tasks) if np.median(words[tasks == task]) > 3]
    carriers, runs = word_runs([s.response for s in samples], 4)
    held = np.bincount(runs)
    clean_run = np.bincount(runs, weights=poisoned[carriers], minlength=len(held)) == 0
    print("epoch  high-side/poisoned -> kept/poisoned  largest clean-run share")
    for record in history:
        scores = np.array([np.nan if v is None else v for v in record["scores"]["log_ratio"]], dtype=float)
        high = high_side(scores, tasks) & np.isin(tasks, long_tasks)
        outliers = np.bincount(runs, weights=high[carriers], minlength=len(held))
        dominated = (outliers >= args.min_count) & (outliers >= args.share * held)
        kept = np.zeros(len(scores), dtype=bool)
        kept[carriers[dominated[runs]]] = True
        kept &= high
        share = np.where(clean_run & (outliers >= args.min_count), outliers / held, 0.0)
        top = int(np.argmax(share))
        largest = f"{share[top]:.2f} ({int(outliers[top])}/{held[top]})" if share[top] > 0 else "-"
        print(
            f"{record['epoch']:5d}  {high.sum():4d}/{poisoned[high].sum():<4d}"
            f" -> {kept.sum():4d}/{poisoned[kept].sum():<4d}  {largest}"
        )


if __name__ == "__main__":
    main()
