"""Would another spread rule have changed a pcr run? Replayed on the run's own detection record.

Each epoch end of pcr adds flags by score (``outlier_indices``), then by spread (``spread_indices``;
recorded since 3236914). Given the same flags, training is the same, so a run under another
``response_share``, ``run_prevalence`` or ``shared_words`` is identical to the recorded one exactly
when the other rule spreads to the same samples at every epoch end; at the first epoch where it does
not, the runs part, and what follows is not known without training again. Reads no poison flag::

    python benchmarks/replay_spread.py RESULTS/runs/CELL --option response_share=0.2 [--option ...]
    python benchmarks/replay_spread.py RESULTS --option response_share=0.2   # every pcr run in RESULTS
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from vlshield.data.manifest import read_manifest
from vlshield.defenses.detection import spread_flags, word_runs
from vlshield.defenses.pcr import PCRConfig


def replay(run: Path, changes: dict[str, float]) -> str:
    """'same' or where the spread under ``changes`` first differs from the record of ``run``."""
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "train_summary.json").read_text())["defense"]
    recorded = PCRConfig(**config["run"]["defense_options"])
    other = dataclasses.replace(recorded, **changes)
    if any("outlier_indices" not in record for record in summary["detections"]):
        return "no indices in its record (trained before 3236914): cannot replay"
    responses = [sample.response for sample in read_manifest(Path(config["run"]["data"]) / "train.jsonl")]
    carriers, runs = word_runs(responses, other.shared_words)
    flagged = np.zeros(len(responses), dtype=bool)
    for record in summary["detections"]:
        flagged[record["outlier_indices"]] = True
        spread = spread_flags(flagged, carriers, runs, other.response_share, other.run_prevalence) & ~flagged
        expected = np.zeros_like(flagged)
        expected[record["spread_indices"]] = True
        if not np.array_equal(spread, expected):
            return (
                f"differs at epoch {record['epoch']}: spreads to {int(spread.sum())} "
                f"(recorded {int(expected.sum())}; {int((spread & ~expected).sum())} more, "
                f"{int((expected & ~spread).sum())} fewer)"
            )
        flagged |= expected
    return f"same at every epoch end ({int(flagged.sum())} flags): the run would not change"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a pcr run directory, or a benchmark's --out directory")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE of the spread rule to replay")
    args = parser.parse_args()
    changes = {}
    for option in args.option:
        key, _, value = option.partition("=")
        if key not in ("response_share", "run_prevalence", "shared_words"):
            parser.error(f"--option {option}: only response_share, run_prevalence and shared_words replay")
        changes[key] = int(value) if key == "shared_words" else float(value)
    runs = [args.path] if (args.path / "train_summary.json").exists() else sorted(args.path.glob("runs/*--pcr--*"))
    for run in runs:
        if (run / "train_summary.json").exists():
            print(f"{run.name}: {replay(run, changes)}")


if __name__ == "__main__":
    main()
