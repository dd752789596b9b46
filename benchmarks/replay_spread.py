"""Would another spread rule have changed a pcr run? Replayed on the run's own detection record.

Each epoch end of pcr adds flags by score (``outlier_indices``), then by spread (``spread_indices``;
recorded since 3236914). Given the same flags, training is the same, so a run under another
``response_share``, ``run_prevalence``, ``shared_words``, ``spread_within_tasks`` or ``spread_significance`` is
identical to the recorded one exactly when the other rule spreads to the same samples at every epoch end; at the first
epoch where it does not, the runs part, and what follows is not known without training again. A run trained before the
record named its indices can still be cleared of a LOWER ``response_share`` or of a ``spread_significance``,
by a bound: flags are sticky, so at each epoch end no more of a run's carriers were flagged than the final
flags hold, or than were flagged in all; if that many cannot reach the lower share (or the significance)
before the run's carriers were all flagged (or at all, for a run never spread), the run cannot change (a
result cell keeps the final flags only when there are few). Reads no poison flag but with ``--poisoned``,
which counts the poisoned samples among those the other rule spreads to beyond the record::

    python benchmarks/replay_spread.py RESULTS/runs/CELL --option response_share=0.2 [--option ...]
    python benchmarks/replay_spread.py RESULTS --option response_share=0.2   # every pcr run in RESULTS
    python benchmarks/replay_spread.py RESULTS --option spread_within_tasks=true
    python benchmarks/replay_spread.py docs/results --option spread_significance=12 --poisoned   # cells/*.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from vlshield.config import from_dict
from vlshield.data.manifest import read_manifest
from vlshield.defenses.detection import hypergeometric_tail, spread_flags, word_runs
from vlshield.defenses.pcr import PCRConfig
from vlshield.poisoning import PoisonConfig, poison_dataset

REPLAYED = ("response_share", "run_prevalence", "shared_words", "spread_within_tasks", "spread_significance")


def records(path: Path) -> list[Path]:
    """``path`` if it is one pcr run directory or result cell, else the pcr runs under it, else its pcr cells."""
    if path.is_file() or (path / "train_summary.json").exists():
        return [path]
    runs = [run for run in sorted(path.glob("runs/*--pcr--*")) if (run / "train_summary.json").exists()]
    return runs or sorted(path.glob("cells/*--pcr--*.json"))


def read_record(path: Path) -> tuple[dict, dict]:
    """A pcr run's config and its defense summary; ``path`` is a run directory or a result cell."""
    if path.is_dir():
        config = json.loads((path / "config.json").read_text())
        return config, json.loads((path / "train_summary.json").read_text())["defense"]
    cell = json.loads(path.read_text())
    return cell["config"], cell["train"]["defense"]


def record_samples(path: Path, config: dict, cache: Path) -> list:
    """The training samples of the run ``read_record`` read at ``path``. A result cell keeps no data: its
    poisoned data is made again from the cell's poison config (byte-identical) under ``cache``."""
    if path.is_dir():
        return read_manifest(Path(config["run"]["data"]) / "train.jsonl")
    poison = config["poison"]
    data = cache / hashlib.sha256(json.dumps(poison, sort_keys=True).encode()).hexdigest()[:16]
    if not data.exists():
        poison_dataset(PoisonConfig(**poison), data, progress=False)
    return read_manifest(data / "train.jsonl")


def names_indices(summary: dict) -> bool:
    """Whether every detection of a pcr record names the samples it flagged (records since 3236914)."""
    return all("outlier_indices" in record for record in summary["detections"])


# Defaults a record without resolved settings trained with, where today's differ.
EARLIER_DEFAULTS = {"spread_significance": 0.0}


def recorded_config(config: dict, summary: dict) -> PCRConfig:
    """The settings a pcr run trained with: its summary's resolved settings, or for a record older than
    them (all from before ``spread_significance`` was on by default), its options over those days' defaults."""
    if "config" in summary:
        return from_dict(PCRConfig, summary["config"])
    return from_dict(PCRConfig, {**EARLIER_DEFAULTS, **config["run"]["defense_options"]})


def load_record(path: Path, cache: Path) -> tuple[PCRConfig, dict, list]:
    """A pcr run's settings (``recorded_config``), its defense summary and its training samples
    (``read_record``, ``record_samples``)."""
    config, summary = read_record(path)
    return recorded_config(config, summary), summary, record_samples(path, config, cache)


def replay(path: Path, changes: dict[str, float], cache: Path, poisoned: bool = False) -> str:
    """'same' or where the spread under ``changes`` first differs from the record of ``path``; with
    ``poisoned``, how many of the samples it spreads to beyond the record are poisoned (an evaluation)."""
    recorded, summary, samples = load_record(path, cache)
    other = dataclasses.replace(recorded, **changes)
    responses = [sample.response for sample in samples]
    groups = np.array([sample.task for sample in samples]) if other.spread_within_tasks else None
    if not names_indices(summary):
        same_rest = (
            other.shared_words == recorded.shared_words
            and other.run_prevalence == recorded.run_prevalence
            and other.spread_within_tasks == recorded.spread_within_tasks
            and recorded.spread_significance in (0, other.spread_significance)
        )
        if not same_rest or other.response_share > recorded.response_share:
            return (
                "no indices in its record (trained before 3236914): only a lower response_share or a "
                "spread_significance is bounded"
            )
        if "flagged_indices" not in summary:
            return "no indices in its record (trained before 3236914) and no final flags in the cell: not bounded"
        return bound(summary, responses, recorded, other)
    carriers, runs = word_runs(responses, other.shared_words)
    flagged = np.zeros(len(responses), dtype=bool)
    for record in summary["detections"]:
        flagged[record["outlier_indices"]] = True
        spread = spread_flags(
            flagged, carriers, runs, other.response_share, other.run_prevalence, groups, other.spread_significance
        )
        spread &= ~flagged
        expected = np.zeros_like(flagged)
        expected[record["spread_indices"]] = True
        if not np.array_equal(spread, expected):
            more = spread & ~expected
            line = (
                f"differs at epoch {record['epoch']}: spreads to {int(spread.sum())} "
                f"(recorded {int(expected.sum())}; {int(more.sum())} more, "
                f"{int((expected & ~spread).sum())} fewer)"
            )
            if poisoned:
                truth = np.array([bool(sample.meta.get("poisoned")) for sample in samples])
                line += f"; of the {int(more.sum())} more, {int(truth[more].sum())} poisoned"
            return line
        flagged |= expected
    return f"same at every epoch end ({int(flagged.sum())} flags): the run would not change"


def bound(summary: dict, responses: list[str], recorded: PCRConfig, other: PCRConfig) -> str:
    """Whether a run recorded without indices could change under ``other``'s lower ``response_share`` or
    its ``spread_significance`` (see the module doc): both spread wherever the recorded rule did, and more."""
    carriers, runs = word_runs(responses, recorded.shared_words)
    final = np.zeros(len(responses), dtype=bool)
    final[summary["flagged_indices"]] = True
    held = np.bincount(runs)
    held_final = np.bincount(runs, weights=final[carriers], minlength=len(held))

    def spreads(most: float, flags: int, run: int) -> bool:
        """Whether ``other`` could spread ``run`` with at most ``most`` of its carriers among ``flags`` flagged."""
        most = min(int(most), int(held[run]) - 1)  # a run spreads only while some carrier is not flagged
        if most < max(2, other.run_prevalence * flags):
            return False
        if most >= other.response_share * held[run]:
            return True
        significance = other.spread_significance
        return significance > 0 and hypergeometric_tail(most, len(responses), flags, int(held[run])) >= significance

    # Flags at each spread check (before that epoch's spread), and the epochs that spread.
    checks = [(record["epoch"], record["flagged"] - record["shared_response"]) for record in summary["detections"]]
    spread_epochs = [record["epoch"] for record in summary["detections"] if record["shared_response"] > 0]
    for run in np.flatnonzero(held_final >= 2):
        short = held_final[run] < held[run] and held_final[run] < recorded.response_share * held[run]
        if short and spreads(held_final[run], int(final.sum()), run):
            return f"may change: a run of {held[run]} carriers ends with {int(held_final[run])} flagged"
        # Up to when a run flagged whole at the end may have been short of some carriers: the last spread.
        horizon = spread_epochs[-1] if spread_epochs and held_final[run] == held[run] else None
        for epoch, flagged in checks:
            if horizon is not None and epoch >= horizon:
                break
            most = min(flagged, held_final[run])
            if spreads(most, flagged, run):
                return f"may change: at epoch {epoch} up to {int(most)} of a run's {held[run]} carriers were flagged"
    return f"cannot change (bound; {int(final.sum())} flags)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", type=Path, help="a pcr run directory or result cell, or a benchmark's --out directory or docs/results"
    )
    parser.add_argument(
        "--data-cache", type=Path, help="where cells' poisoned data is made again (default: a temporary directory)"
    )
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE of the spread rule to replay")
    parser.add_argument(
        "--poisoned",
        action="store_true",
        help="also count the poisoned samples among those spread to beyond the record (reads the poison flags)",
    )
    args = parser.parse_args()
    changes = {}
    for option in args.option:
        key, _, value = option.partition("=")
        if key not in REPLAYED:
            parser.error(f"--option {option}: only {', '.join(REPLAYED)} replay")
        if key == "spread_within_tasks" and value not in ("true", "false"):
            parser.error(f"--option {option}: spread_within_tasks is true or false")
        converters = {"shared_words": int, "spread_within_tasks": lambda text: text == "true"}
        changes[key] = converters.get(key, float)(value)
    with tempfile.TemporaryDirectory() as tmp:
        for record in records(args.path):
            line = replay(record, changes, args.data_cache or Path(tmp), args.poisoned)
            print(f"{record.name.removesuffix('.json')}: {line}")


if __name__ == "__main__":
    main()
