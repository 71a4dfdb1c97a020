"""The statistics every eraselab number rests on: intervals, paired tests, false-discovery control.

    from bench.core.stats import hierarchical_bootstrap, mcnemar_exact, benjamini_hochberg
    mean, lo, hi = hierarchical_bootstrap(values, clusters)      # 95% interval, seeded
    p = mcnemar_exact(edited_detected, twin_detected)            # paired binary outcomes
    p_adj = benjamini_hochberg([0.001, 0.04, 0.3])

Images come in clusters: every erasure seed (suite seed) makes its own edit, and the images of one
edit share it. ``hierarchical_bootstrap`` therefore resamples clusters first and units within
each drawn cluster second, so an interval carries the between-edit spread, not only the
between-image one. With one cluster it is the ordinary percentile bootstrap.

Tests answer "did this change": exact McNemar for paired binary outcomes (the discordant pairs
under H0 are a fair coin), the Wilcoxon signed-rank test for paired continuous ones, Fisher's
exact test and Mann-Whitney U where observations are not paired, a normal z-test for a statistic
given with its standard error (KID). Benjamini-Hochberg controls the false discovery rate over a
family of tests. Everything is seeded: the same data give the same numbers, byte for byte.
"""

from __future__ import annotations

import math

import numpy as np

N_BOOT = 10_000
LEVEL = 0.95
ALPHA = 0.05  # the false discovery rate every verdict is controlled at


def _clean(values, clusters=None):
    x = np.asarray(values, dtype=float)
    c = np.zeros(len(x), dtype=int) if clusters is None else np.asarray(clusters)
    keep = ~np.isnan(x)
    return x[keep], c[keep]


def hierarchical_bootstrap(values, clusters=None, n_boot: int = N_BOOT, level: float = LEVEL,
                           seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of ``values`` (NaN dropped) and its percentile interval from a
    two-stage bootstrap: clusters with replacement, then values within each drawn cluster.

    The point estimate is the plain mean of all values. A resample's mean weights each drawn
    cluster by its size, so with equal cluster sizes it is the mean of the resampled cluster means.
    """
    x, c = _clean(values, clusters)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) == 1:
        return mean, mean, mean
    means = _resampled_means(x, c, n_boot, seed)
    alpha = (1 - level) / 2
    return mean, float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def _resampled_means(x: np.ndarray, c: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = sorted(set(c.tolist()))
    groups = [x[c == label] for label in labels]
    k = len(groups)
    if k == 1:  # one cluster: the plain percentile bootstrap (the same draws as bootstrap_ci)
        return x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    picks = rng.integers(0, k, size=(n_boot, k))       # stage 1: which clusters
    sums = np.zeros(n_boot)
    counts = np.zeros(n_boot)
    for j, g in enumerate(groups):
        # stage 2: for every (resample, slot) that drew cluster j, resample its values
        drawn = picks == j
        times = int(drawn.sum())
        if times == 0:
            continue
        idx = rng.integers(0, len(g), size=(times, len(g)))
        slot_sums = g[idx].sum(axis=1)
        rows = np.nonzero(drawn)[0]
        np.add.at(sums, rows, slot_sums)
        np.add.at(counts, rows, len(g))
    return sums / counts


def unpaired_difference_interval(a, clusters_a, b, clusters_b, n_boot: int = N_BOOT,
                                 level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of mean(b) - mean(a) for two independent clustered samples: each side
    resampled hierarchically on its own."""
    xa, ca = _clean(a, clusters_a)
    xb, cb = _clean(b, clusters_b)
    if len(xa) == 0 or len(xb) == 0:
        return math.nan, math.nan
    diffs = _resampled_means(xb, cb, n_boot, seed + 1) - _resampled_means(xa, ca, n_boot, seed)
    alpha = (1 - level) / 2
    return float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


def cluster_means(values, clusters) -> dict:
    """Mean per cluster (NaN dropped): the between-seed spread a report shows."""
    x, c = _clean(values, clusters)
    return {label: float(x[c == label].mean()) for label in sorted(set(c.tolist()))}


def mcnemar_exact(a, b) -> float:
    """Two-sided exact McNemar p-value for paired binary outcomes ``a`` and ``b`` (pairs with a NaN
    dropped): under H0 each discordant pair goes either way with probability 1/2."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep] > 0.5, b[keep] > 0.5
    up, down = int((~a & b).sum()), int((a & ~b).sum())
    if up + down == 0:
        return 1.0
    return float(binomtest(up, up + down, 0.5).pvalue)


def wilcoxon_paired(differences) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (zeros dropped, NaN dropped);
    1.0 when every difference is zero."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) == 0 or np.all(d == 0):
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def fisher_exact(a, b) -> float:
    """Two-sided Fisher exact p-value for two unpaired samples of binary outcomes."""
    from scipy.stats import fisher_exact as _fisher

    a, b = _clean(a)[0] > 0.5, _clean(b)[0] > 0.5
    if len(a) == 0 or len(b) == 0:
        return math.nan
    table = [[int(a.sum()), int((~a).sum())], [int(b.sum()), int((~b).sum())]]
    return float(_fisher(table).pvalue)


def mann_whitney(a, b) -> float:
    """Two-sided Mann-Whitney U p-value for two unpaired samples of continuous scores."""
    from scipy.stats import mannwhitneyu

    a, b = _clean(a)[0], _clean(b)[0]
    if len(a) == 0 or len(b) == 0:
        return math.nan
    if np.all(a == a[0]) and np.all(b == a[0]):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def z_test(delta: float, std: float) -> float:
    """Two-sided p-value of ``delta`` given its standard error ``std`` (normal approximation)."""
    if any(v is None or math.isnan(v) for v in (delta, std)):
        return math.nan
    if std <= 0:
        return 1.0 if delta == 0 else 0.0
    return float(math.erfc(abs(delta) / std / math.sqrt(2)))


def benjamini_hochberg(p_values) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN and is not counted in the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    ok = np.nonzero(~np.isnan(p))[0]
    m = len(ok)
    if m == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]  # monotone from the largest p down
    out[order] = np.minimum(ranked, 1.0)
    return out.tolist()


def bootstrap_ci(values, n_boot: int = 2000, level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi) of unclustered values: the percentile bootstrap, for single-sample summaries
    such as the model card's per-concept rates."""
    return hierarchical_bootstrap(values, None, n_boot=n_boot, level=level, seed=seed)
