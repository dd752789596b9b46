"""Run-to-run spread: one poisoned dataset and one model, trained at several training seeds.

    python benchmarks/training_noise.py --data D --model llava:tiny --seeds 0 1 2 3 --out R

Each run is `vlshield train --data D --model M --defense DEF train.seed=S` followed by
`vlshield evaluate`: the data, its poisoned samples and the test set stay fixed, only the
initialisation, the batch order and the views change. A run whose ``metrics.json`` exists is read,
not redone, so a killed sweep resumes. Prints each run's ASR, clean quality and false-trigger rate,
then the mean, SD and range of the quality: how far apart two runs of one cell land, which bounds
what a single-run quality comparison (pcr at 98 % of undefended, say) can resolve.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from vlshield.config import from_dict, merge, parse_overrides
from vlshield.evaluation.evaluate import evaluate_run
from vlshield.training.config import RunConfig
from vlshield.training.loop import train


def quality(metrics: dict) -> tuple[str, float]:
    """The task's clean-quality metric: CIDEr for captions, VQA accuracy otherwise."""
    if metrics.get("cider") is not None:
        return "CIDEr", float(metrics["cider"])
    return "VQA accuracy", float(metrics["vqa_accuracy"])


def run_once(args: argparse.Namespace, seed: int) -> dict:
    run_dir = Path(args.out) / f"{args.defense}-train{seed}"
    if (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "metrics.json").read_text())
    settings = {"data": args.data, "model": args.model, "defense": args.defense, "train": {"seed": seed}}
    config = from_dict(RunConfig, merge(settings, parse_overrides(args.overrides)))
    train(config, run_dir, resume=(run_dir / "config.json").is_file(), progress=not args.quiet)
    return evaluate_run(run_dir, args.data, progress=not args.quiet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Dataset directory written by `vlshield poison`.")
    parser.add_argument("--model", default="llava:tiny")
    parser.add_argument("--defense", default="none")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--out", required=True, help="Folder of the runs, one per seed (DEFENSE-trainSEED).")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("overrides", nargs="*", help="Dotted run overrides, e.g. defense_options.repair_epochs=0")
    args = parser.parse_args()
    values = []
    for seed in args.seeds:
        metrics = run_once(args, seed)
        name, value = quality(metrics)
        values.append(value)
        print(
            f"train.seed {seed}: ASR {100 * metrics['asr']:.1f} %, {name} {value:.1f}, "
            f"false triggers {100 * metrics['false_trigger_rate']:.1f} %",
            flush=True,
        )
    if len(values) > 1:
        mean, sd = statistics.mean(values), statistics.stdev(values)
        print(
            f"{name} over {len(values)} seeds: mean {mean:.1f}, SD {sd:.1f} ({100 * sd / mean:.1f} % of the mean), "
            f"range {min(values):.1f}-{max(values):.1f} (lowest {100 * min(values) / max(values):.0f} % of highest)"
        )


if __name__ == "__main__":
    main()
