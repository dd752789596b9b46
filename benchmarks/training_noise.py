"""Run-to-run spread: one poisoned dataset and one model, trained at several training seeds.

    python benchmarks/training_noise.py --data D --model llava:tiny --defense none pcr --seeds 0 1 2 3 --out R

Each run is `vlshield train --data D --model M --defense DEF train.seed=S` followed by
`vlshield evaluate`: the data, its poisoned samples and the test set stay fixed, only the
initialisation, the batch order and the views change. A run whose ``metrics.json`` exists is read,
not redone, so a killed sweep resumes. Prints each run's ASR, clean quality and false-trigger rate,
then the mean, SD and range of the quality: how far apart two runs of one cell land, which bounds
what a single-run quality comparison (pcr at 98 % of undefended, say) can resolve. With two
defenses, also each seed's quality ratio of the second over the first (runs paired by seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from vlshield.benchmark.report import QUALITY
from vlshield.config import from_dict, merge, parse_overrides
from vlshield.evaluation.evaluate import evaluate_run
from vlshield.training.config import RunConfig
from vlshield.training.loop import train


def quality(metrics: dict) -> tuple[str, float]:
    """The task's clean-quality metric and its value (the report's: CIDEr, or VQA accuracy)."""
    key, name = QUALITY[metrics["setting"]["task"]]
    return name, float(metrics[key])


def run_once(args: argparse.Namespace, defense: str, seed: int) -> dict:
    run_dir = Path(args.out) / f"{defense}-train{seed}"
    if (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "metrics.json").read_text())
    settings = {"data": args.data, "model": args.model, "defense": defense, "train": {"seed": seed}}
    config = from_dict(RunConfig, merge(settings, parse_overrides(args.overrides)))
    train(config, run_dir, resume=(run_dir / "config.json").is_file(), progress=not args.quiet)
    return evaluate_run(run_dir, args.data, progress=not args.quiet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Dataset directory written by `vlshield poison`.")
    parser.add_argument("--model", default="llava:tiny")
    parser.add_argument("--defense", nargs="+", default=["none"], help="One defense, or two to compare by seed.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument(
        "--out", required=True, help="Folder of the runs, one per defense and seed (DEFENSE-trainSEED)."
    )
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("overrides", nargs="*", help="Dotted run overrides, e.g. defense_options.repair_epochs=0")
    args = parser.parse_args()
    if len(args.defense) > 2:
        parser.error("--defense: one defense, or two to compare")
    values: dict[str, list[float]] = {}
    for defense in args.defense:
        values[defense] = []
        for seed in args.seeds:
            metrics = run_once(args, defense, seed)
            name, value = quality(metrics)
            values[defense].append(value)
            print(
                f"{defense}, train.seed {seed}: ASR {100 * metrics['asr']:.1f} %, {name} {value:.1f}, "
                f"false triggers {100 * metrics['false_trigger_rate']:.1f} %",
                flush=True,
            )
        if len(args.seeds) > 1:
            runs = values[defense]
            mean, sd = statistics.mean(runs), statistics.stdev(runs)
            print(
                f"{defense}: {name} over {len(runs)} seeds: mean {mean:.1f}, SD {sd:.1f} ({100 * sd / mean:.1f} % "
                f"of the mean), range {min(runs):.1f}-{max(runs):.1f} "
                f"(lowest {100 * min(runs) / max(runs):.0f} % of highest)"
            )
    if len(args.defense) == 2:
        base, other = args.defense
        ratios = [100 * b / a for a, b in zip(values[base], values[other], strict=True)]
        listed = ", ".join(f"{ratio:.1f}" for ratio in ratios)
        print(f"{other} over {base} at the same seed: {listed} % (mean {statistics.mean(ratios):.1f} %)")


if __name__ == "__main__":
    main()
