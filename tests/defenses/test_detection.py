import numpy as np

from vlshield.defenses.detection import robust_high_gap, robust_low_outliers


def test_robust_rule_finds_far_low_values_under_a_skewed_bulk():
    rng = np.random.default_rng(2)
    # A bimodal clean bulk (two caption lengths, say) and 40 values far below it.
    bulk = np.concatenate([rng.normal(-2.0, 0.3, 700), rng.normal(-1.0, 0.3, 300)])
    values = np.concatenate([bulk, rng.normal(-5.0, 0.2, 40)])
    found = robust_low_outliers(values, threshold=3.5)
    assert set(found.tolist()) == set(range(1000, 1040))
    assert robust_low_outliers(bulk, threshold=3.5) is None


def test_a_large_low_group_is_not_outliers():
    rng = np.random.default_rng(1)
    halves = np.concatenate([rng.normal(0, 0.1, 800), rng.normal(-5, 0.1, 200)])
    assert robust_low_outliers(halves, threshold=3.5, max_fraction=0.15) is None  # 20 % > the 15 % cap
    assert len(robust_low_outliers(halves, threshold=3.5, max_fraction=0.25)) == 200


def test_by_hand_median_and_mad():
    # median 0, MAD 1 -> robust SD 1.4826; -6 is 4.05 SDs below, -5 only 3.37: one outlier at threshold 3.5.
    values = np.array([-6.0, -5.0, -1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0])
    assert robust_low_outliers(values, threshold=3.5, max_fraction=0.5).tolist() == [0]


def test_identical_values_flag_nothing():
    assert robust_low_outliers(np.ones(100), threshold=3.5) is None


def test_gap_rule_by_hand():
    # 20 values: median 0.5, MAD 0.5 -> robust SD 0.74; 5, 5.5, 6, 6.5, 7 are all > 3.5 SDs (3.1) up.
    # Sorted from the top, the widest gap among the first 5+ is 5 -> 0.9 (4.1): the top five are flagged.
    values = np.array([0.0] * 7 + [0.5] * 3 + [1.0] * 4 + [0.9, 5.0, 5.5, 6.0, 6.5, 7.0])
    assert robust_high_gap(values, threshold=3.5, min_gap=1.0, max_fraction=0.5).tolist() == [15, 16, 17, 18, 19]
    assert len(robust_high_gap(values, threshold=3.5, min_gap=4.5, max_fraction=0.5)) == 0  # gap 4.1 < 4.5
    assert len(robust_high_gap(values, threshold=3.5, min_gap=1.0, min_count=6, max_fraction=0.5)) == 0


def test_gap_rule_needs_a_gap_not_only_a_long_tail():
    rng = np.random.default_rng(3)
    tail = rng.exponential(1.0, 2000)  # many values far above the median, but no empty stretch of 1 unit
    assert len(robust_high_gap(tail, threshold=3.5, min_gap=1.0)) == 0
    values = np.concatenate([tail, tail.max() + 1.5 + rng.uniform(0, 1, 30)])
    assert robust_high_gap(values, threshold=3.5, min_gap=1.0).tolist() == list(range(2000, 2030))
    # An early-training bulk that sits at one point (MAD near 0): a spread of 0.1 is not a gap of 1.
    flat = np.concatenate([np.zeros(500), np.linspace(0.5, 0.6, 10)])
    assert len(robust_high_gap(flat, threshold=3.5, min_gap=1.0)) == 0
