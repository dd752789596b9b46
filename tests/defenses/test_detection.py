import numpy as np

from vlshield.defenses.detection import robust_low_outliers


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
