"""Bootstrap confidence intervals, the one statistic every eraselab aggregate reports.

``bootstrap_ci([1, 0, 1, 1])`` -> ``(mean, low, high)``: the percentile bootstrap 95% interval
of the mean, seeded so the same data always gives the same interval.

``intervals_separated(a, b)`` is the one rule for "these two estimates differ" used everywhere
(``eraselab compare``, the report's comparison, "erased" in tables and summary): the two 95%
intervals do not overlap. It is conservative (two intervals can overlap a little while the
difference is significant), which suits a nightly check that must not cry wolf.
"""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def intervals_separated(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when the intervals ``a = (lo, hi)`` and ``b`` do not overlap; False if any bound is NaN."""
    a_lo, a_hi = a
    b_lo, b_hi = b
    if any(x != x for x in (a_lo, a_hi, b_lo, b_hi)):  # NaN: no interval, no claim
        return False
    return a_hi < b_lo or b_hi < a_lo
