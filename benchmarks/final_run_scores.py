"""The run-level score (run_scores.py) on the final scores of every pcr run of a benchmark's results.

run_scores.py reads a score history, which only a scoring-only run keeps. Every pcr run keeps its final
log-ratios (train_summary.json), so this asks of a whole results directory what a run-level rule would
face at the end of training: for each pcr run and each long-response task, the largest |z| of a word run
held by clean responses only, and the z range of runs held mostly by poisoned ones, over the samples pcr
did NOT flag (a flagged sample's score is moved by its unlearning). Reads the poison flags: an
evaluation, not a defense::

    python benchmarks/final_run_scores.py RESULTS   # RESULTS = vlshield benchmark --out
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from run_scores import run_texts, run_z  # benchmarks/ is on the path when this script runs

from vlshield.data.manifest import read_manifest
from vlshield.defenses.detection import word_runs


def task_line(scores: np.ndarray, responses: list[str], poisoned: np.ndarray, min_carriers: int) -> tuple[float, str]:
    """One task: the largest |z| of a clean run, and a line naming that run and the poisoned runs' z range."""
    carriers, runs = word_runs(responses, 4)
    texts = run_texts(responses)
    held = np.bincount(runs)
    bad = np.bincount(runs, weights=poisoned[carriers], minlength=len(held))
    z = run_z(scores, carriers, runs, min_carriers)
    clean = np.where(bad == 0, z, np.nan)
    top = int(np.nanargmax(np.abs(clean)))
    line = f"clean {clean[top]:+6.1f} {texts[top]!r} ({held[top]})"
    target = np.where(bad > held / 2, z, np.nan)
    if not np.isnan(target).all():
        line += f"  poisoned runs {np.nanmin(target):+.1f} to {np.nanmax(target):+.1f}"
    return abs(float(clean[top])), line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a benchmark's --out directory (its runs/ are read)")
    parser.add_argument("--min-carriers", type=int, default=20)
    args = parser.parse_args()
    worst = 0.0
    for run in sorted(args.results.glob("runs/*--pcr--*")):
        summary_path = run / "train_summary.json"
        if not summary_path.exists():
            continue
        defense = json.loads(summary_path.read_text())["defense"]
        config = json.loads((run / "config.json").read_text())
        samples = read_manifest(Path(config["run"]["data"]) / "train.jsonl")
        poisoned = np.array([bool(sample.meta.get("poisoned")) for sample in samples])
        tasks = np.array([sample.task for sample in samples])
        scores = np.array([np.nan if v is None else v for v in defense["log_ratio"]], dtype=float)
        scores[defense["flagged_indices"]] = np.nan
        lines = []
        for task in np.unique(tasks):
            rows = np.flatnonzero(tasks == task)
            responses = [samples[i].response for i in rows]
            if np.median([len(response.split()) for response in responses]) <= 3:
                continue  # short answers: pcr reads the evidence there, not the log-ratio
            clean, line = task_line(scores[rows], responses, poisoned[rows], args.min_carriers)
            worst = max(worst, clean)
            lines.append(f"[{task}] {line}")
        flagged = len(defense["flagged_indices"])
        print(f"{run.name}: {flagged} flagged; " + "; ".join(lines))
    print(f"largest |z| of a clean run: {worst:.1f}")


if __name__ == "__main__":
    main()
