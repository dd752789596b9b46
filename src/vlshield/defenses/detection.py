"""Finding a small, separate low cluster in per-sample scores: a 1-D two-component Gaussian mixture."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Mixture:
    """Two 1-D Gaussians, component 0 the one with the lower mean."""

    weights: tuple[float, float]
    means: tuple[float, float]
    stds: tuple[float, float]

    @property
    def separation(self) -> float:
        """Distance between the means in units of the larger standard deviation."""
        return (self.means[1] - self.means[0]) / max(self.stds)


def fit_two_gaussians(values: np.ndarray, iterations: int = 200) -> tuple[Mixture, np.ndarray]:
    """EM for a two-component 1-D Gaussian mixture; returns it and each value's posterior of the low component.

    Deterministic: initialised at the 10th and 90th percentiles. Standard deviations are floored at
    1e-3 of the spread (plus 1e-8) so that a component collapsing on identical values stays finite.
    """
    values = np.asarray(values, dtype=np.float64)
    spread = float(values.std()) + 1e-8
    floor = 1e-3 * spread
    means = np.percentile(values, [10, 90]).astype(np.float64)
    stds = np.array([spread / 2, spread / 2])
    weights = np.array([0.5, 0.5])
    for _ in range(iterations):
        log_density = (
            -0.5 * ((values[:, None] - means) / stds) ** 2 - np.log(stds) + np.log(np.maximum(weights, 1e-12))
        )  # [n, 2]
        log_density -= log_density.max(axis=1, keepdims=True)
        responsibility = np.exp(log_density)
        responsibility /= responsibility.sum(axis=1, keepdims=True)
        totals = responsibility.sum(axis=0) + 1e-12
        weights = totals / len(values)
        means = (responsibility * values[:, None]).sum(axis=0) / totals
        stds = np.sqrt((responsibility * (values[:, None] - means) ** 2).sum(axis=0) / totals)
        stds = np.maximum(stds, floor)
    order = np.argsort(means)
    mixture = Mixture(
        weights=tuple(float(w) for w in weights[order]),
        means=tuple(float(m) for m in means[order]),
        stds=tuple(float(s) for s in stds[order]),
    )
    return mixture, responsibility[:, order[0]]


def low_outliers(values: np.ndarray, max_weight: float = 0.15, min_separation: float = 3.0) -> np.ndarray | None:
    """Indices of a small low cluster, or None when there is none.

    The low component must hold at most ``max_weight`` of the values and its mean lie at least
    ``min_separation`` (larger) standard deviations below the other's; then the values whose
    posterior of the low component exceeds 0.5 are returned.
    """
    if len(values) < 10:
        return None
    mixture, posterior = fit_two_gaussians(values)
    if mixture.weights[0] > max_weight or mixture.separation < min_separation:
        return None
    return np.flatnonzero(posterior > 0.5)


def robust_low_outliers(values: np.ndarray, threshold: float = 3.5, max_fraction: float = 0.15) -> np.ndarray | None:
    """Indices of values more than ``threshold`` robust standard deviations below the median, or None.

    The robust standard deviation is 1.4826 x the median absolute deviation (equal to the standard
    deviation for Gaussian data). None when nothing qualifies, or when more than ``max_fraction``
    would (then the low values are a large group of their own, not outliers). Unlike a two-Gaussian
    fit it is not misled by a skewed or bimodal bulk of clean scores.
    """
    if len(values) < 10:
        return None
    median = float(np.median(values))
    # 1e-12 keeps a constant score (MAD 0) from dividing by zero.
    scale = 1.4826 * float(np.median(np.abs(values - median))) + 1e-12
    found = np.flatnonzero((values - median) / scale < -threshold)
    if len(found) == 0 or len(found) > max_fraction * len(values):
        return None
    return found
