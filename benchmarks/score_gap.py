"""The gap pcr stands on: per-sample cross-view scores of poisoned vs clean training samples.

Train an UNDEFENDED-in-effect run that only records the scores, then plot them::

    vlshield poison --attack badnet --out data/badnet
    vlshield train --data data/badnet --model llava:tiny --defense pcr --out runs/gap \\
        defense_options.suppress=false defense_options.keep_score_history=true
    python benchmarks/score_gap.py runs/gap --data data/badnet --out score_gap.png

Prints, per epoch end, the AUROC of "poisoned scores lower than clean", the medians, and what
pcr's flagging rule (its defaults: robust z < -3.5 and log-ratio < -1) would flag and how precisely; writes
histograms of three epochs. With several tasks in the data (VQA: questions and descriptions), also
prints per task what each of pcr's two rules would flag (count / poisoned among them): the log-ratio
rule and the evidence gap rule (``robust_high_gap``, 3.5 SDs, a 1-nat gap), the latter also after
sparing one question's answers (``one_question_answers``), before the response spread. Reads the
poison flags: an evaluation, not a defense.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vlshield.data.manifest import read_manifest  # noqa: E402
from vlshield.defenses.detection import normalised, one_question_answers, robust_high_gap  # noqa: E402
from vlshield.defenses.pcr import PCRConfig, flag_rule  # noqa: E402


def auroc_low(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(a positive scores below a negative), ties counted half."""
    low, high = scores[positive], scores[~positive]
    below = (low[:, None] < high[None, :]).mean()
    ties = (low[:, None] == high[None, :]).mean()
    return float(below + ties / 2)


def load_history(run: str, data: str) -> tuple[list[dict], list, np.ndarray, np.ndarray]:
    """A run's per-epoch score records and its training samples, with their poison flags and tasks."""
    summary = json.loads((Path(run) / "train_summary.json").read_text())
    history = [record for record in summary["defense"]["detections"] if "scores" in record]
    if not history:
        raise SystemExit(f"{run}: no score history; train with defense_options.keep_score_history=true")
    samples = read_manifest(Path(data) / "train.jsonl")
    poisoned = np.array([bool(s.meta.get("poisoned")) for s in samples])
    tasks = np.array([s.task for s in samples])
    return history, samples, poisoned, tasks


def print_rules_by_task(history: list[dict], poisoned: np.ndarray, tasks: np.ndarray, samples: list) -> None:
    """Per epoch and task: what the log-ratio rule and the evidence gap rule would flag, the latter
    also after sparing the answers to one question (``one_question_answers``, as pcr does)."""
    config = PCRConfig()
    answers = np.array([normalised(sample.response) for sample in samples])
    prompts = np.array([normalised(sample.prompt) for sample in samples])
    print(
        "epoch  task: poisoned | log-ratio rule flags/poisoned | evidence gap rule flags/poisoned"
        " | the same, one question's answers spared"
    )
    for record in history:
        if "evidence" not in record["scores"]:
            continue
        cells = []
        for task in np.unique(tasks):
            rows = np.flatnonzero(tasks == task)
            log_ratio = np.array(record["scores"]["log_ratio"], dtype=float)[rows]
            evidence = np.array(record["scores"]["evidence"], dtype=float)[rows]
            by_ratio = rows[flag_rule(log_ratio, config)]
            by_evidence = rows[
                robust_high_gap(
                    evidence, config.robust_threshold, config.evidence_gap, max_fraction=config.max_flag_fraction
                )
            ]
            kept = by_evidence[~one_question_answers(by_evidence, rows, answers, prompts, config.prompt_share)]
            cells.append(
                f"{task}: {poisoned[rows].sum()} | {len(by_ratio)}/{poisoned[by_ratio].sum()}"
                f" | {len(by_evidence)}/{poisoned[by_evidence].sum()} | {len(kept)}/{poisoned[kept].sum()}"
            )
        print(f"{record['epoch']:5d}  " + "   ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run trained with keep_score_history=true (suppress=false)")
    parser.add_argument("--data", required=True, help="its poisoned dataset directory")
    parser.add_argument("--out", default="score_gap.png")
    args = parser.parse_args()
    history, samples, poisoned, tasks = load_history(args.run, args.data)
    print("epoch  auroc  poison-median  clean-median  rule-flags  rule-precision")
    for record in history:
        scores = np.array(record["scores"]["log_ratio"], dtype=float)
        found = flag_rule(scores, PCRConfig())
        precision = f"{poisoned[found].mean():.2f}" if len(found) else "-"
        print(
            f"{record['epoch']:5d}  {auroc_low(scores, poisoned):.3f}  {np.median(scores[poisoned]):13.2f}"
            f"  {np.median(scores[~poisoned]):12.2f}  {len(found):10d}  {precision:>14}"
        )
    if len(np.unique(tasks)) > 1:
        print_rules_by_task(history, poisoned, tasks, samples)
    chosen = [history[0], history[len(history) // 2], history[-1]]
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=False)
    for axis, record in zip(axes, chosen, strict=True):
        scores = np.array(record["scores"]["log_ratio"], dtype=float)
        bins = np.linspace(scores.min(), scores.max(), 50)
        axis.hist(scores[~poisoned], bins=bins, alpha=0.6, label="clean", density=True)
        axis.hist(scores[poisoned], bins=bins, alpha=0.6, label="poisoned", density=True)
        axis.set_title(f"epoch {record['epoch']}")
        axis.set_xlabel("log CE(orig) - log CE(image-free view)")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
