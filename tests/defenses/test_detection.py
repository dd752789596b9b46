import numpy as np

from vlshield.defenses.detection import fit_two_gaussians, low_outliers


def test_a_small_separate_low_cluster_is_found_exactly():
    rng = np.random.default_rng(0)
    clean = rng.normal(2.0, 0.3, size=950)
    poison = rng.normal(0.1, 0.05, size=50)
    values = np.concatenate([clean, poison])
    mixture, _ = fit_two_gaussians(values)
    assert abs(mixture.weights[0] - 0.05) < 0.01 and abs(mixture.means[0] - 0.1) < 0.05
    found = low_outliers(values)
    assert set(found.tolist()) == set(range(950, 1000))


def test_one_gaussian_or_a_large_low_group_gives_no_flags():
    rng = np.random.default_rng(1)
    assert low_outliers(rng.normal(0, 1, size=1000)) is None
    halves = np.concatenate([rng.normal(0, 0.1, 500), rng.normal(5, 0.1, 500)])
    assert low_outliers(halves) is None  # the low group holds 50 %, above the 15 % cap


def test_identical_values_stay_finite():
    mixture, posterior = fit_two_gaussians(np.ones(100))
    assert np.isfinite(posterior).all() and all(np.isfinite(mixture.stds))


def test_robust_rule_finds_far_low_values_under_a_skewed_bulk():
    from vlshield.defenses.detection import robust_low_outliers

    rng = np.random.default_rng(2)
    # A bimodal clean bulk (two caption lengths, say) and 40 values far below it.
    bulk = np.concatenate([rng.normal(-2.0, 0.3, 700), rng.normal(-1.0, 0.3, 300)])
    values = np.concatenate([bulk, rng.normal(-5.0, 0.2, 40)])
    found = robust_low_outliers(values, threshold=3.5)
    assert set(found.tolist()) == set(range(1000, 1040))
    assert robust_low_outliers(bulk, threshold=3.5) is None
