"""benchmarks/variant_cells.py: a pcr variant's cells next to default pcr's and the undefended ones."""

from __future__ import annotations

import pytest


@pytest.fixture
def script(benchmark_script):
    return benchmark_script("variant_cells")


FOUND = {"flagged": 100, "poisoned": 100, "precision": 1.0, "recall": 1.0}  # every poisoned sample, nothing else
ONE_OF_TWO_PAIRED = "paired (same source, torch thread count and CPU instruction set, where recorded): 1 of 2 cells;"


def _paired_line(script, base, variant) -> str:
    """The last line of variant_cells' report on ``base`` and ``variant``: how many pairs share their floats."""
    return script.report(script.compare(base, variant)).splitlines()[-1]


def test_variant_next_to_default_and_undefended(tmp_path, write_cell, script):
    base, variant = tmp_path / "base", tmp_path / "variant"
    write_cell(base, "badnet", "none", 0, 1.0, 500.0)
    write_cell(base, "badnet", "pcr", 0, 0.0, 450.0, FOUND)  # 90 %
    write_cell(base, "sig", "none", 0, 1.0, 400.0)
    write_cell(base, "sig", "pcr", 0, 0.0, 400.0, FOUND)  # 100 %
    write_cell(variant, "badnet", "pcr", 0, 0.0, 500.0, FOUND)  # 100 %: +10 points
    write_cell(variant, "sig", "pcr", 0, 0.5, 380.0, FOUND, threads=2)  # 95 %: -5 points, ASR 50 %; 2 threads
    write_cell(variant, "blended", "pcr", 0, 0.0, 300.0, FOUND)  # no twin in base: left out
    rows = script.compare(base, variant)
    assert [row["key"][3] for row in rows] == ["badnet", "sig"]
    lines = script.report(rows).splitlines()
    assert lines[2] == (
        "| llava:tiny caption badnet 5 % seed 0 | 100.0 % / 500.0 | 0.0 % / 450.0 (90 %) | 0.0 % / 500.0 (100 %) "
        "| 100 (100.0 %, 100 %) | 100 (100.0 %, 100 %) |"
    )
    assert lines[5].startswith("default: 2 installed cells, mean ASR 0.0 %, above 15 % in 0; quality 90-100 %")
    assert lines[6].startswith("variant: 2 installed cells, mean ASR 25.0 %, above 15 % in 1; quality 95-100 %")
    # differences +10 and -5: mean +2.5; a resampled mean lies between -5 and +10
    assert lines[7].startswith("variant - default quality ratio: mean +2.5 points [")
    assert lines[7].endswith("higher in 1, lower in 1 of 2")
    # badnet ran on the same revision and thread count as its default cell, sig on 2 threads against 1
    assert lines[8].startswith(ONE_OF_TWO_PAIRED)
    low, high = script.interval([10.0, -5.0])
    assert -5.0 <= low <= 2.5 <= high <= 10.0


def test_cells_of_two_revisions_pair_when_their_source_hashes_match(tmp_path, write_cell, script):
    base, variant = tmp_path / "base", tmp_path / "variant"
    for attack in ("badnet", "sig"):
        write_cell(base, attack, "none", 0, 1.0, 500.0)
    # default cells at revision aaa, variant cells at bbb (a docs-only commit later): badnet's source is
    # the same, sig's variant ran on other source
    write_cell(base, "badnet", "pcr", 0, 0.0, 500.0, FOUND, revision="aaa", source="s1")
    write_cell(base, "sig", "pcr", 0, 0.0, 500.0, FOUND, revision="aaa", source="s1")
    write_cell(variant, "badnet", "pcr", 0, 0.0, 500.0, FOUND, revision="bbb", source="s1")
    write_cell(variant, "sig", "pcr", 0, 0.0, 500.0, FOUND, revision="bbb", source="s2")
    assert _paired_line(script, base, variant).startswith(ONE_OF_TWO_PAIRED)


def test_cells_of_one_source_and_thread_count_on_two_instruction_sets_do_not_pair(tmp_path, write_cell, script):
    # The same source on one thread gave CIDEr 484.2 on one machine and 505.4 on an AVX2 one
    # (llava badnet captions, pcr, seed 0; docs/results/experiments/machine-check/).
    base, variant = tmp_path / "base", tmp_path / "variant"
    for attack in ("badnet", "sig"):
        write_cell(base, attack, "none", 0, 1.0, 500.0)
        write_cell(base, attack, "pcr", 0, 0.0, 500.0, FOUND, source="s1", cpu="AVX2")
    write_cell(variant, "badnet", "pcr", 0, 0.0, 500.0, FOUND, source="s1", cpu="AVX2")
    write_cell(variant, "sig", "pcr", 0, 0.0, 500.0, FOUND, source="s1", cpu="AVX512")
    assert _paired_line(script, base, variant).startswith(ONE_OF_TWO_PAIRED)


def test_twins_rerun_elsewhere_are_pooled(tmp_path, write_cell, script):
    # The undefended and default pcr twins of a variant cell rerun on the variant's machine, in two
    # directories each: the later directory's cell replaces BASE's, and a twin found in any is used.
    base, variant = tmp_path / "base", tmp_path / "variant"
    reruns = [tmp_path / "none-a", tmp_path / "none-b"]
    defaults = [tmp_path / "pcr-a", tmp_path / "pcr-b"]
    write_cell(base, "badnet", "none", 0, 1.0, 500.0)  # another machine's: replaced by none-a's
    write_cell(reruns[0], "badnet", "none", 0, 1.0, 400.0)
    write_cell(reruns[1], "sig", "none", 0, 1.0, 300.0)  # in no BASE
    write_cell(defaults[0], "badnet", "pcr", 0, 0.0, 360.0, FOUND)  # 90 % of 400
    write_cell(defaults[1], "sig", "pcr", 0, 0.0, 300.0, FOUND)  # 100 % of 300
    write_cell(variant, "badnet", "pcr", 0, 0.0, 400.0, FOUND)  # 100 %
    write_cell(variant, "sig", "pcr", 0, 0.0, 270.0, FOUND)  # 90 %
    rows = script.compare(base, variant, defaults, reruns)
    assert [(row["key"][3], row["default"]["none_quality"]) for row in rows] == [("badnet", 400.0), ("sig", 300.0)]
    assert [row["default"]["ratio"] for row in rows] == [90.0, 100.0]
    assert [row["variant"]["ratio"] for row in rows] == [100.0, 90.0]
