"""benchmarks/pcr_cells.py: pcr cells paired with their undefended twins, and the headline counts."""

from __future__ import annotations

import pytest


@pytest.fixture
def script(benchmark_script):
    return benchmark_script("pcr_cells")


def test_pairs_table_and_counts(tmp_path, write_cell, script):
    missed = {"flagged": 0, "poisoned": 100, "precision": None, "recall": 0.0}
    found = {"flagged": 100, "poisoned": 100, "precision": 1.0, "recall": 1.0}
    write_cell(tmp_path, "badnet", "none", 0, 0.98, 500.0)
    write_cell(tmp_path, "badnet", "pcr", 0, 0.0, 490.0, found)
    write_cell(tmp_path, "badnet", "oracle", 0, 0.0, 520.0)  # another defense: not paired
    write_cell(tmp_path, "sig", "none", 0, 1.0, 400.0)
    write_cell(tmp_path, "sig", "pcr", 0, 0.5, 400.0, missed)
    write_cell(tmp_path, "wanet", "none", 0, 0.03, 300.0)  # not installed: in the table, not in the counts
    write_cell(tmp_path, "wanet", "pcr", 0, 0.0, 330.0, missed)
    write_cell(tmp_path, "blended", "pcr", 0, 0.0, 300.0, found)  # no undefended twin: left out
    pairs = script.pairs(tmp_path)
    assert [pair["key"][3] for pair in pairs] == ["badnet", "sig", "wanet"]
    table = script.table(pairs).splitlines()
    # 490 / 500 = 98 %; precision and recall as percentages
    assert table[2] == (
        "| llava:tiny | caption | badnet | 5 % | 0 | 98.0 % / 500.0 | 0.0 % / 490.0 (98 %) | 100 (100.0 %, 100 %) |"
    )
    assert table[3].endswith("| 50.0 % / 400.0 (100 %) | 0 |")
    counts = script.counts(pairs).splitlines()
    # badnet and sig installed (98 %, 100 %), wanet not (3 %): mean ASR (98 + 100) / 2 -> (0 + 50) / 2
    assert counts[0] == "caption at 5 %: 3 pairs, 2 installed (ASR >= 90 %)"
    assert counts[1] == "  mean ASR 99.0 % -> 25.0 % with pcr; 0.0 % in 1; above 15 % in 1"
    assert counts[2] == "    llava:tiny caption sig 5 % seed 0: 100.0 -> 50.0 %"
    # quality ratios 98 % and 100 %: none below the 98 % bar
    assert counts[3] == "  quality with pcr 98-100 % of undefended (mean 99 %); below 98 % in 0"


def test_cells_pooled_from_two_directories_pair_and_the_later_replaces(tmp_path, write_cell, script):
    found = {"flagged": 100, "poisoned": 100, "precision": 1.0, "recall": 1.0}
    defended, undefended = tmp_path / "pcr", tmp_path / "none"
    write_cell(defended, "badnet", "pcr", 0, 0.0, 450.0, found)
    write_cell(defended, "badnet", "none", 0, 1.0, 400.0)  # an older undefended run, replaced below
    write_cell(undefended, "badnet", "none", 0, 1.0, 500.0)
    (pair,) = script.pairs(defended, undefended)
    assert (pair["none_quality"], pair["quality"], pair["ratio"]) == (500.0, 450.0, 90.0)
    (pair,) = script.pairs(undefended, defended)  # the other order keeps the 400.0 run
    assert pair["ratio"] == 112.5


def test_twins_of_the_pcr_cells_machine_replace_the_undefended_of_another(tmp_path, write_cell, script):
    found = {"flagged": 100, "poisoned": 100, "precision": 1.0, "recall": 1.0}
    results, twins = tmp_path / "results", tmp_path / "twins"
    # badnet: pcr ran on machine B, its undefended twin on an unrecorded machine; blended: both on A
    write_cell(results, "badnet", "pcr", 0, 0.0, 450.0, found, cpu="AVX2", cpu_model="B")
    write_cell(results, "badnet", "none", 0, 1.0, 500.0)
    write_cell(results, "blended", "pcr", 0, 0.0, 450.0, found, cpu="AVX2", cpu_model="A")
    write_cell(results, "blended", "none", 0, 1.0, 500.0, cpu="AVX2", cpu_model="A")
    write_cell(twins, "badnet", "none", 0, 1.0, 400.0, cpu="AVX2", cpu_model="B")  # B's: pairs badnet
    write_cell(twins, "blended", "none", 0, 1.0, 400.0, cpu="AVX2", cpu_model="B")  # not A's: left alone
    assert [pair["ratio"] for pair in script.pairs(results)] == [90.0, 90.0]  # 450 / 500
    assert [pair["ratio"] for pair in script.pairs(results, twins=(twins,))] == [112.5, 90.0]  # 450 / 400
