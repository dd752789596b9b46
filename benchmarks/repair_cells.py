"""Which pcr cells a repair epoch for a group of flags only (``60b5cb0``) changes, read off their records.

    python benchmarks/repair_cells.py docs/results

pcr decides on the repair epoch at the schedule's last epoch end. Before ``60b5cb0`` any flag
brought it; since, only flags holding ``settle_min_fraction`` of the training samples do. A cell
whose flags at that epoch end number between 1 and that bar is one the change touches; no other
can be (no flags: no repair either way; a group: a repair either way). Prints each such cell, its
flags there, whether its run repaired (train epochs past the schedule) and its revision.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlshield.config import from_dict
from vlshield.defenses.pcr import PCRConfig


def flags_at_schedule_end(cell: dict) -> int | None:
    """The flags of the detection record at the schedule's last epoch end (None: no such record)."""
    epochs = cell["config"]["run"]["train"]["epochs"]
    records = [record for record in cell["train"]["defense"]["detections"] if record["epoch"] == epochs]
    return records[0]["flagged"] if records else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="A benchmark --out directory (its cells/*.json).")
    args = parser.parse_args()
    touched = seen = 0
    for path in sorted(Path(args.results, "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        if cell.get("status") != "ok" or cell["cell"]["defense"] != "pcr":
            continue
        seen += 1
        config = from_dict(PCRConfig, cell["config"]["run"].get("defense_options") or {})
        samples = cell["config"]["poison"]["limit"]
        bar = config.min_group(samples)
        flags = flags_at_schedule_end(cell)
        if flags is None or not 0 < flags < bar:
            continue
        touched += 1
        repaired = cell["train"]["epochs"] > cell["config"]["run"]["train"]["epochs"]
        print(
            f"{cell['name']:50s} {flags} flags of {samples} (bar {bar:g}), "
            f"{'repaired' if repaired else 'no repair'}, {cell['git_revision'][:7]}"
        )
    print(f"{touched} of {seen} pcr cells have 1 to fewer than a group of flags at the schedule's end")


if __name__ == "__main__":
    main()
