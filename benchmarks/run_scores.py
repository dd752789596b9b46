"""pcr's log-ratio averaged over the carriers of each shared word run, replayed on a score history.

pcr's scores are per sample, and a poisoned sample is flagged only when its own score is an outlier.
An inserted target (vlood, trojvlm) or a weakly installed one (llava:tiny sig 60/255 seed 2) moves
its samples' scores as a group without making any one an outlier. Averaged over the carriers of the
run they share (4 words, as pcr's spread), the shift can be read: for each run held by at least
``--min-carriers`` responses, the z of its carriers' mean score against the task's median and robust
SD (1.4826 MAD) over the square root of the carriers. pcr does NOT use this (docs/method.md, Open).
Train with the score history, then replay::

    vlshield train --data D --model llava:tiny --defense pcr --out R \\
        defense_options.suppress=false defense_options.keep_score_history=true
    python benchmarks/run_scores.py R --data D

Prints per epoch end the runs of highest and lowest z, each as z (carriers/poisoned among them), and
the largest |z| of a run held by clean samples only: the margin a run-level rule would stand on.
Reads the poison flags: an evaluation, not a defense.
"""

from __future__ import annotations

import argparse

import numpy as np
from score_gap import load_history  # benchmarks/ is on the path when this script runs

from vlshield.defenses.detection import held_runs, word_runs


def run_z(scores: np.ndarray, carriers: np.ndarray, runs: np.ndarray, min_carriers: int) -> np.ndarray:
    """[runs] z of each run's carriers' mean score (NaN for runs held by fewer than ``min_carriers``
    scored samples): (mean - median) / (robust SD / sqrt(carriers)), median and SD over all scores."""
    seen = ~np.isnan(scores)
    median = np.median(scores[seen])
    spread = 1.4826 * np.median(np.abs(scores[seen] - median))
    held = seen[carriers]
    count = np.bincount(runs[held], minlength=runs.max() + 1)
    total = np.bincount(runs[held], weights=scores[carriers[held]], minlength=runs.max() + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (total / count - median) / (spread / np.sqrt(count))
    return np.where(count >= min_carriers, z, np.nan)


def run_texts(responses: list[str]) -> list[str]:
    """The text of each run ``word_runs(responses, 4)`` numbers, in its order (of first appearance)."""
    return list(dict.fromkeys(run for response in responses for run in held_runs(response, 4)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run trained with keep_score_history=true (suppress=false)")
    parser.add_argument("--data", required=True, help="its poisoned dataset directory")
    parser.add_argument("--min-carriers", type=int, default=20)
    parser.add_argument("--top", type=int, default=2, help="Runs printed at each end.")
    args = parser.parse_args()
    history, samples, poisoned, tasks = load_history(args.run, args.data)
    for task in np.unique(tasks):
        rows = np.flatnonzero(tasks == task)
        responses = [samples[i].response for i in rows]
        carriers, runs = word_runs(responses, 4)
        texts = run_texts(responses)
        held = np.bincount(runs)
        bad = np.bincount(runs, weights=poisoned[rows][carriers], minlength=len(held)).astype(int)
        print(f"task {task or '-'}: {len(rows)} samples, {int(poisoned[rows].sum())} poisoned")
        print("epoch  highest z  |  lowest z  |  largest |z| of a clean run")
        for record in history:
            scores = np.array([np.nan if v is None else v for v in record["scores"]["log_ratio"]], dtype=float)[rows]
            if np.isnan(scores).all():
                continue
            z = run_z(scores, carriers, runs, args.min_carriers)
            order = np.argsort(np.where(np.isnan(z), -np.inf, z))[::-1]
            order = order[~np.isnan(z[order])]
            ends = [order[: args.top], order[::-1][: args.top]]
            shown = ["; ".join(f"{z[r]:+.1f} {texts[r]!r} ({held[r]}/{bad[r]})" for r in end) for end in ends]
            clean = np.where(bad == 0, np.abs(z), np.nan)
            print(f"{record['epoch']:5d}  {shown[0]}  |  {shown[1]}  |  {np.nanmax(clean):.1f}")


if __name__ == "__main__":
    main()
