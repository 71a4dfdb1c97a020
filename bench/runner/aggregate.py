"""Aggregates of a run, derived from its per-image rows: never stored by hand.

One row per (model, method, variant, concept, prompt set): image count, detection rate, CLIP
score and same-seed CLIP image similarity, each with its bootstrap 95% interval
(bench.stats.bootstrap_ci, seeded, so the same rows always give the same intervals), plus KID
against the original images of the same prompts (from the run's KID parts).

    python -c "import pandas as pd; from bench.runner.aggregate import aggregate; \\
               print(aggregate(pd.read_parquet('runs/mini-default/results.parquet')))"
"""

from __future__ import annotations

import math

from bench.runner.schema import AGGREGATE_COLUMNS, GROUP_KEY


def aggregate(results, kid=None):
    """The aggregates DataFrame (schema.AGGREGATE_COLUMNS) of a results DataFrame."""
    import pandas as pd
    from bench.stats import bootstrap_ci

    out = []
    for key, g in results.groupby(list(GROUP_KEY), sort=True, dropna=False):
        row = dict(zip(GROUP_KEY, key))
        row["n"] = len(g)
        det = [float(v) for v in g["detected"] if v is not None and not _isnan(v)]
        row["n_detected"] = len(det)
        row["detected_rate"], row["detected_lo"], row["detected_hi"] = bootstrap_ci(det)
        for col in ("clip_score", "clip_image_cosine"):
            vals = pd.to_numeric(g[col], errors="coerce") if col in g else []
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = bootstrap_ci(list(vals))
        out.append(row)
    agg = pd.DataFrame(out)
    if kid is not None and len(kid):
        k = kid[list(GROUP_KEY) + ["kid_clip", "kid_clip_std"]].rename(
            columns={"kid_clip": "kid", "kid_clip_std": "kid_std"})
        agg = agg.merge(k, on=list(GROUP_KEY), how="left")
    for col in AGGREGATE_COLUMNS:
        if col not in agg.columns:
            agg[col] = float("nan")
    return agg[list(AGGREGATE_COLUMNS)]


def _isnan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)
