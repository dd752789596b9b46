"""benchmarks/replay_spread.py on a result cell: its data made again from the poison config, its record replayed."""

from __future__ import annotations

import json
import math

import pytest

from vlshield.config import to_dict
from vlshield.data.manifest import read_manifest
from vlshield.defenses.detection import hypergeometric_tail, word_runs
from vlshield.defenses.pcr import PCRConfig
from vlshield.poisoning import PoisonConfig, poison_dataset


@pytest.fixture
def script(benchmark_script):
    return benchmark_script("replay_spread")


def test_a_cell_is_replayed_on_its_data_made_again(tmp_path, script):
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
    cache = tmp_path / "cache"
    assert script.replay(path, {}, cache) == "same at every epoch end (2 flags): the run would not change"
    # 2 of the 6 carriers among 2 flags of 60 samples: p = C(6, 2) / C(60, 2) = 15 / 1770, 10 ** -2.07.
    assert script.replay(path, {"spread_significance": 2.0}, cache) == (
        "differs at epoch 1: spreads to 4 (recorded 0; 4 more, 0 fewer)"
    )
    assert script.replay(path, {"spread_significance": 2.0}, cache, poisoned=True).endswith(
        "; of the 4 more, 4 poisoned"
    )
    assert script.replay(path, {"spread_significance": 2.1}, cache).startswith("same at every epoch end")
    # the data was made once, under the cache, byte for byte the cell's
    (made,) = cache.iterdir()
    assert (made / "train.jsonl").read_bytes() == (tmp_path / "data" / "train.jsonl").read_bytes()
    # A record older than the resolved settings is read by its options over the defaults of its days
    assert script.recorded_config(cell["config"], cell["train"]["defense"]).spread_significance == 0.0
    # A record that holds its resolved settings is read by them, not by its options: had the run trained
    # with spread_significance 2, it would have spread at epoch 1, so its record differs from that rule.
    cell["train"]["defense"]["config"] = to_dict(PCRConfig(response_share=0.5, spread_significance=2.0))
    path.write_text(json.dumps(cell))
    assert script.replay(path, {}, cache) == "differs at epoch 1: spreads to 4 (recorded 0; 4 more, 0 fewer)"


def test_spread_margin_reads_how_improbable_each_kind_of_run_is(tmp_path, benchmark_script):
    # The same 60 captions, 6 poisoned. Epoch 1: 2 of the 6 found (2 flags); epoch 2: also 2 clean captions
    # that share a 4-word run (4 flags). spread_margin gives each run the share rule leaves -log10 p.
    poison = PoisonConfig(limit=60, test_size=4, image_size=32, rate=0.1, seed=3)
    samples = read_manifest(poison_dataset(poison, tmp_path / "data", progress=False) / "train.jsonl")
    poisoned = [i for i, sample in enumerate(samples) if sample.meta.get("poisoned")]
    carriers, runs = word_runs([sample.response for sample in samples], 4)
    clean_runs = {}
    for sample, run in zip(carriers.tolist(), runs.tolist(), strict=True):
        if sample not in poisoned:
            clean_runs.setdefault(run, []).append(sample)
    # a clean run of at least 5 carriers: 2 of them flagged are under the cell's 50 % share
    run, holders = next((run, held) for run, held in clean_runs.items() if len(held) >= 5)
    assert sum(1 for r in runs.tolist() if r == run) == len(holders)  # no poisoned caption holds it
    records = [
        {"epoch": 1, "outlier_indices": poisoned[:2], "spread_indices": []},
        {"epoch": 2, "outlier_indices": holders[:2], "spread_indices": []},
    ]
    module = benchmark_script("spread_margin")
    first, second = module.margins(PCRConfig(response_share=0.5), {"detections": records}, samples)
    # 2 of the 6 target carriers among 2 flags of 60: p = C(6, 2) / C(60, 2) = 15 / 1770
    assert abs(first["target"] - math.log10(1770 / 15)) < 1e-9 and first["clean"] == 0.0
    expected = hypergeometric_tail(2, 60, 4, len(holders))
    assert second["clean"] >= expected > 0  # the chosen run, or a clean run still less probable
    assert second["flags"] == 4 and second["mixed"] == 0.0
