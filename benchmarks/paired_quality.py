"""Clean quality of each defended cell against its undefended twin, with a paired bootstrap interval.

    python benchmarks/paired_quality.py RESULTS [--defense pcr] [--resamples 2000] [--bar 98]

RESULTS is a `vlshield benchmark --out` directory (cell files in RESULTS/cells, each naming its run
directory, whose predictions.jsonl is kept). For every ok cell of a defense whose undefended cell
(same model, task, attack, rate and seed) is there too, scores each clean test sample in both runs
(VQA accuracy per question; CIDEr-D per image, its IDF over the whole test set), then draws the test
samples with replacement (the same draw for both runs: the comparison is paired) and prints the
quality ratio defended / undefended with its 95 % percentile interval, and whether the bar (98 % of
the undefended quality) lies above the interval ("below"), under it ("met") or inside it ("open":
200 test samples cannot tell). Reads predictions and references only; no poison flag.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vlshield.benchmark.report import load_results
from vlshield.evaluation.captioning import cider_per_image
from vlshield.evaluation.evaluate import references
from vlshield.evaluation.metrics import paired_ratio
from vlshield.evaluation.vqa import vqa_accuracy
from vlshield.training.data import load_split


def sample_quality(run: Path, data: Path, task: str) -> np.ndarray:
    """Per clean test sample quality of ``run``'s predictions, float [n], in the order of test_clean.jsonl."""
    split = load_split(data / "test_clean.jsonl")
    predicted = {}
    with open(run / "predictions.jsonl") as handle:
        for line in handle:
            record = json.loads(line)
            if record["set"] == "test_clean":
                predicted[record["id"]] = record["prediction"]
    missing = [sample.id for sample in split.samples if sample.id not in predicted]
    if missing:
        raise ValueError(
            f"{run / 'predictions.jsonl'}: no prediction for {len(missing)} clean test samples: {missing[0]}, ..."
        )
    predictions = [predicted[sample.id] for sample in split.samples]
    refs = references(split)
    if task == "vqa":
        return 100.0 * np.array([vqa_accuracy(p, answers) for p, answers in zip(predictions, refs, strict=True)])
    return cider_per_image(predictions, refs)


def verdict(low: float, high: float, bar: float) -> str:
    return "below" if high < bar else "met" if low >= bar else "open"


def _run_dir(results: Path, record: dict) -> Path:
    recorded = Path(record.get("run_dir") or "")
    return recorded if (recorded / "predictions.jsonl").exists() else results / "runs" / record["name"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--defense", default="pcr")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--bar", type=float, default=98.0, help="Quality bar, %% of the undefended quality.")
    args = parser.parse_args()
    cells = {}
    for record in load_results(args.results):
        if record.get("status") == "ok":
            cell = record["cell"]
            cells[(cell["model"], cell["task"], cell["attack"], cell["rate"], cell["seed"], cell["defense"])] = record
    counts = {"met": 0, "open": 0, "below": 0}
    print(f"{'cell':56s} {'none':>7s} {args.defense:>7s} {'ratio':>7s}  95 % interval   bar {args.bar:.0f} %")
    for key, record in sorted(cells.items()):
        twin = cells.get(key[:5] + ("none",))
        if key[5] != args.defense or twin is None:
            continue
        try:
            scores = [sample_quality(_run_dir(args.results, r), Path(r["data_dir"]), key[1]) for r in (record, twin)]
        except (OSError, ValueError) as error:
            print(f"{record['name']:56s} skipped: {error}")
            continue
        ratio, low, high = paired_ratio(scores[0], scores[1], args.resamples)
        outcome = verdict(100 * low, 100 * high, args.bar)
        counts[outcome] += 1
        print(
            f"{record['name']:56s} {scores[1].mean():7.1f} {scores[0].mean():7.1f} {100 * ratio:6.1f} %"
            f"  [{100 * low:5.1f}, {100 * high:5.1f}]  {outcome}"
        )
    print(f"bar {args.bar:.0f} %: met in {counts['met']}, below in {counts['below']}, open in {counts['open']} cells")


if __name__ == "__main__":
    main()
