"""Finding the few samples whose score lies far below the bulk: a median / MAD rule."""

from __future__ import annotations

import numpy as np


def robust_low_outliers(values: np.ndarray, threshold: float = 3.5, max_fraction: float = 0.15) -> np.ndarray | None:
    """Indices of values more than ``threshold`` robust standard deviations below the median, or None.

    The robust standard deviation is 1.4826 x the median absolute deviation (equal to the standard
    deviation for Gaussian data). None when nothing qualifies, or when more than ``max_fraction``
    would (then the low values are a large group of their own, not outliers). Unlike a two-Gaussian
    fit, which missed a long-tailed poison group on qwen2_5_vl:tiny, it is not misled by the shape
    of either group.
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
