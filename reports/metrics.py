"""The report's numbers: one estimate (value, 95% interval, n) per metric and (method, concept).

    from reports.metrics import summarize
    summary = summarize(run)            # run: reports.rundata.Run
    summary.rows[0]["det_target"]       # Estimate(value=0.94, lo=0.88, hi=0.98, n=64)

Everything but KID is recomputed from ``results.parquet`` with ``bench.stats.bootstrap_ci`` (the
same seeded percentile bootstrap the runner uses), so a table cell can be checked against the
rows directly. KID needs image features, so it comes from ``aggregates.parquet``; its interval
is kid +- 1.96 kid_std (torchmetrics' spread over KID subsets, a normal approximation).
Erasure seconds and parameters changed come from the manifest's ``edits``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.stats import bootstrap_ci, intervals_separated
from reports import rundata as rd


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0

    @property
    def missing(self) -> bool:
        return self.value is None or math.isnan(self.value)

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    def separated_from(self, other: "Estimate") -> bool:
        """True when the two 95% intervals do not overlap (bench.stats.intervals_separated, the
        rule `eraselab compare` uses too)."""
        if self.missing or other.missing:
            return False
        return intervals_separated((self.lo, self.hi), (other.lo, other.hi))

    def clearly_below(self, other: "Estimate") -> bool:
        """Lower than ``other`` with separated intervals: how "erased" is decided."""
        return self.separated_from(other) and self.value < other.value


MISSING = Estimate(math.nan)


@dataclass(frozen=True)
class Metric:
    """One reported metric: where it comes from and which direction is good."""

    key: str
    label: str          # short column header
    better: str | None  # "lower", "higher" or None
    kind: str           # "pct" | "float" | "seconds" | "count": how it is formatted
    prompt_set: str | None = None
    column: str | None = None


METRICS = (
    Metric("det_target", "Detection, target", "lower", "pct", "target", rd.DETECTED),
    Metric("det_related", "Detection, related", "higher", "pct", "related", rd.DETECTED),
    Metric("det_unrelated", "Detection, unrelated", "higher", "pct", "unrelated", rd.DETECTED),
    # No good direction on target prompts (as in bench/runner/compare.py): a lower score can mean
    # erasure or a broken image, so it is never "best" nor a regression.
    Metric("clip_target", "CLIP score, target", None, "float", "target", rd.CLIP_SCORE),
    Metric("clip_unrelated", "CLIP score, unrelated", "higher", "float", "unrelated", rd.CLIP_SCORE),
    # Same-seed similarity and KID are preservation measures, on unrelated prompts (PROTOCOL.md 1.3).
    Metric("sim_unrelated", "Same-seed similarity", "higher", "float", "unrelated", rd.CLIP_IMAGE_COSINE),
    Metric("kid_unrelated", "KID vs original", "lower", "float", "unrelated"),
    Metric("seconds", "Erasure seconds", "lower", "seconds"),
    Metric("params_changed", "Parameters changed", "lower", "count"),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}
GROUP = (rd.MODEL, rd.METHOD, rd.VARIANT, rd.CONCEPT)


def estimate(values) -> Estimate:
    """Mean and bootstrap 95% interval of ``values`` (NaN dropped), with n."""
    import numpy as np

    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return MISSING
    value, lo, hi = bootstrap_ci(x)
    return Estimate(value, lo, hi, int(len(x)))


@dataclass
class Summary:
    """Per (model, method, variant, concept) estimates, in display order (original first)."""

    rows: list[dict]          # keys: model, method, variant, concept, label, and every metric key
    concepts: list[str]       # erased concepts, in first-seen order
    methods: list[tuple]      # (model, method, variant), original first
    labels: dict              # (model, method, variant) -> display label
    pooled: dict              # (model, method, variant) -> {"det_target": Estimate, "det_unrelated": ...}
    smoke: list[str]          # why the run is only a smoke test (PROTOCOL.md 1.4), empty if not

    def row(self, concept: str, method_key: tuple) -> dict | None:
        for r in self.rows:
            if r["concept"] == concept and (r["model"], r["method"], r["variant"]) == tuple(method_key):
                return r
        return None

    def original(self, concept: str, model: str | None = None) -> dict | None:
        for r in self.rows:
            if r["concept"] == concept and r["method"] == rd.ORIGINAL and (model is None or r["model"] == model):
                return r
        return None


def method_label(model: str, method: str, variant: str, several_models: bool) -> str:
    label = method if variant in ("", "default", "none", "None") else f"{method} ({variant})"
    return f"{model}: {label}" if several_models else label


def summarize(run) -> Summary:
    df = run.results
    concepts = list(dict.fromkeys(df[rd.CONCEPT].astype(str)))
    keys = list(dict.fromkeys(zip(df[rd.MODEL].astype(str), df[rd.METHOD].astype(str), df[rd.VARIANT])))
    # The original model first: it is the reference every other row is read against.
    keys.sort(key=lambda k: (k[1] != rd.ORIGINAL,))
    several_models = len({k[0] for k in keys}) > 1
    labels = {k: method_label(*k, several_models) for k in keys}
    edits = run.edits()

    rows = []
    for (model, method, variant, concept), group in df.groupby(list(GROUP), sort=False):
        row = {"model": str(model), "method": str(method), "variant": str(variant), "concept": str(concept),
               "label": labels[(str(model), str(method), str(variant))]}
        for metric in METRICS:
            if metric.column is not None:
                subset = group[group[rd.PROMPT_SET] == metric.prompt_set]
                row[metric.key] = estimate(subset[metric.column].astype(float))
        row["kid_unrelated"] = _kid(run.aggregates, model, method, variant, concept)
        row["seconds"], row["params_changed"] = _edit_costs(edits, group, method, variant, concept)
        row["n_images"] = int(len(group))
        row["seeds"] = int(group[rd.SEED].nunique())
        rows.append(row)
    order = {k: i for i, k in enumerate(keys)}
    corder = {c: i for i, c in enumerate(concepts)}
    rows.sort(key=lambda r: (corder[r["concept"]], order[(r["model"], r["method"], r["variant"])]))

    pooled = {}
    for key in keys:
        sel = df[(df[rd.MODEL].astype(str) == key[0]) & (df[rd.METHOD].astype(str) == key[1])
                 & (df[rd.VARIANT] == key[2])]
        pooled[key] = {f"det_{ps}": estimate(sel.loc[sel[rd.PROMPT_SET] == ps, rd.DETECTED].astype(float))
                       for ps in rd.PROMPT_SETS}
    return Summary(rows=rows, concepts=concepts, methods=keys, labels=labels, pooled=pooled,
                   smoke=_smoke_reasons(df))


def _kid(aggregates, model, method, variant, concept) -> Estimate:
    if aggregates is None or "kid" not in aggregates.columns:
        return MISSING
    a = aggregates
    sel = a[(a["model"].astype(str) == str(model)) & (a["method"].astype(str) == str(method))
            & (a["variant"] == str(variant)) & (a["concept"].astype(str) == str(concept))
            & (a["prompt_set"] == "unrelated")]
    if sel.empty or sel["kid"].isna().all():
        return MISSING
    kid = float(sel["kid"].iloc[0])
    std = float(sel["kid_std"].iloc[0]) if "kid_std" in sel and not math.isnan(sel["kid_std"].iloc[0]) else math.nan
    n = int(sel["n"].iloc[0]) if "n" in sel else 0
    return Estimate(kid, kid - 1.96 * std, kid + 1.96 * std, n)


def _edit_costs(edits: dict, group, method, variant, concept) -> tuple[Estimate, Estimate]:
    """Seconds and parameters changed of the edit(s) behind these rows (none for the original)."""
    ids = [str(e) for e in group[rd.EDIT_ID].dropna().unique() if str(e)] if rd.EDIT_ID in group else []
    found = [edits[i] for i in ids if i in edits]
    if not found:  # an older manifest without edit ids on the rows: match on what the edit was
        found = [e for e in edits.values() if str(e.get("method")) == str(method)
                 and str(e.get("variant") or "") == str(variant) and str(e.get("concept")) == str(concept)]
    if not found:
        return MISSING, MISSING
    out = []
    for key in ("seconds", "params_changed"):
        values = [float(e[key]) for e in found if e.get(key) is not None]
        # One edit is one measurement: no interval. Several (repeats) get the bootstrap interval.
        out.append(estimate(values) if len(values) > 1 else
                   Estimate(values[0], n=1) if values else MISSING)
    return out[0], out[1]


def _smoke_reasons(df) -> list[str]:
    """PROTOCOL.md 1.4: a reported number needs >= 64 images per (concept, prompt set), >= 2 seeds."""
    reasons = []
    counts = df.groupby(list(GROUP) + [rd.PROMPT_SET]).size()
    if len(counts) and counts.min() < 64:
        reasons.append(f"as few as {int(counts.min())} images per (method, concept, prompt set); "
                       f"a reported number needs at least 64")
    if rd.SUITE_SEED in df.columns:  # image seeds always differ; repeats of the run are suite seeds
        seeds = df.groupby(list(GROUP) + [rd.PROMPT_SET])[rd.SUITE_SEED].nunique()
        if len(seeds) and seeds.min() < 2:
            reasons.append(f"only {int(seeds.min())} suite seed(s) in some group; a reported number "
                           f"needs at least 2")
    return reasons
