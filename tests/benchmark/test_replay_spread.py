"""benchmarks/replay_spread.py on a result cell: its data made again from the poison config, its record replayed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from vlshield.config import to_dict
from vlshield.data.manifest import read_manifest
from vlshield.poisoning import PoisonConfig, poison_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "replay_spread.py"


def _script():
    spec = importlib.util.spec_from_file_location("replay_spread", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cell_is_replayed_on_its_data_made_again(tmp_path):
    # 60 shapes captions, 6 poisoned (badnet: the target in place of the caption). The cell's record:
    # 2 of the 6 found by score at epoch 1, no spread (response_share 0.5 then: 2 of 6 is under it).
    poison = PoisonConfig(limit=60, test_size=4, image_size=32, rate=0.1, seed=3)
    samples = read_manifest(poison_dataset(poison, tmp_path / "data", progress=False) / "train.jsonl")
    poisoned = [i for i, sample in enumerate(samples) if sample.meta.get("poisoned")]
    assert len(poisoned) == 6
    record = {"epoch": 1, "outlier_indices": poisoned[:2], "spread_indices": []}
    cell = {
        "config": {"poison": to_dict(poison), "run": {"defense_options": {"response_share": 0.5}}},
        "train": {"defense": {"detections": [record], "flagged_indices": poisoned[:2]}},
    }
    path = tmp_path / "llava_tiny--caption--badnet--pcr--0.1--3.json"
    path.write_text(json.dumps(cell))
    script = _script()
    cache = tmp_path / "cache"
    assert script.replay(path, {}, cache) == "same at every epoch end (2 flags): the run would not change"
    # 2 of the 6 carriers among 2 flags of 60 samples: p = C(6, 2) / C(60, 2) = 15 / 1770, 10 ** -2.07.
    assert script.replay(path, {"spread_significance": 2.0}, cache) == (
        "differs at epoch 1: spreads to 4 (recorded 0; 4 more, 0 fewer)"
    )
    assert script.replay(path, {"spread_significance": 2.1}, cache).startswith("same at every epoch end")
    # the data was made once, under the cache, byte for byte the cell's
    (made,) = cache.iterdir()
    assert (made / "train.jsonl").read_bytes() == (tmp_path / "data" / "train.jsonl").read_bytes()
