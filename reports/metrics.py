"""The report's numbers, read from the run's ``aggregates.parquet`` (bench/metrics.py writes it).

    from reports.metrics import summarize
    summary = summarize(run)            # run: reports.rundata.Run
    summary.rows[0]["det_target"]       # Estimate(value=0.94, lo=0.88, hi=0.98, n=64, verdict=...)

The report recomputes nothing: every value, interval, paired difference, adjusted p-value and
verdict is the aggregates table's, so a table cell, ``eraselab compare`` and the runner's CSV
always agree. ``COLUMNS`` picks which (metric, prompt set) pairs the main table shows; what each
metric is (label, format, good direction) is declared once in ``bench.metrics.METRICS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench import metrics as bm
from reports import rundata as rd


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0
    n_seeds: int = 0
    seed_min: float = math.nan
    seed_max: float = math.nan
    delta: float = math.nan        # mean paired difference from the original's twins
    delta_lo: float = math.nan
    delta_hi: float = math.nan
    p_adj: float = math.nan        # Benjamini-Hochberg adjusted p of that difference
    verdict: str = ""              # bench.metrics.verdict of that difference
    p: float = math.nan            # the unadjusted p of that difference (pooled rows: not in the run's family)

    @property
    def missing(self) -> bool:
        return self.value is None or math.isnan(self.value)

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    @property
    def single_seed(self) -> bool:
        return self.n_seeds == 1


MISSING = Estimate(math.nan)


@dataclass(frozen=True)
class Column:
    """One column of the main table: a declared metric on one prompt set."""

    key: str
    metric: str
    prompt_set: str

    @property
    def declared(self) -> bm.Metric:
        return bm.METRIC_BY_NAME[self.metric]

    @property
    def label(self) -> str:
        suffix = f", {self.prompt_set}" if self.prompt_set and self.metric in ("detected", "judge_detected", "clip_score") else ""
        return self.declared.label + suffix

    @property
    def better(self) -> str | None:
        return self.declared.direction(self.prompt_set)

    @property
    def kind(self) -> str:
        return self.declared.fmt


COLUMNS = (
    Column("det_target", "detected", "target"),
    Column("det_related", "detected", "related"),
    Column("det_unrelated", "detected", "unrelated"),
    Column("judge_target", "judge_detected", "target"),
    Column("clip_target", "clip_score", "target"),
    Column("clip_unrelated", "clip_score", "unrelated"),
    Column("sim_unrelated", "clip_image_cosine", "unrelated"),
    Column("kid_unrelated", "kid", "unrelated"),
    Column("seconds", "seconds", bm.NO_PROMPT_SET),
    Column("params_changed", "params_changed", bm.NO_PROMPT_SET),
    Column("delta_bytes", "delta_bytes", bm.NO_PROMPT_SET),
)
METRICS = COLUMNS  # the main table's columns, in order
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}
GROUP = (rd.MODEL, rd.METHOD, rd.VARIANT, rd.CONCEPT)


@dataclass
class Summary:
    """Per (model, method, variant, concept) estimates, in display order (original first)."""

    rows: list[dict]          # keys: model, method, variant, concept, label, and every column key
    concepts: list[str]       # erased concepts, in first-seen order
    methods: list[tuple]      # (model, method, variant), original first
    labels: dict              # (model, method, variant) -> display label
    pooled: dict              # (model, method, variant) -> {"det_target": Estimate, "det_unrelated": ...}
    smoke: list[str]          # why the run is only a smoke test (bench.metrics.size_problems)

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
    # "None" is a missing variant read back as text; "none" is a variant's name (safree's)
    label = method if variant in ("", "default", "None") else f"{method} ({variant})"
    return f"{model}: {label}" if several_models else label


def _estimate(rec: dict | None) -> Estimate:
    if rec is None:
        return MISSING
    f = lambda k: float(rec[k]) if rec.get(k) is not None else math.nan  # noqa: E731
    return Estimate(f("value"), f("lo"), f("hi"), int(rec.get("n") or 0), int(rec.get("n_seeds") or 0),
                    f("seed_min"), f("seed_max"), f("delta"), f("delta_lo"), f("delta_hi"), f("p_adj"),
                    str(rec.get("verdict") or ""), f("p"))


def summarize(run) -> Summary:
    df = run.results
    agg = run.aggregates
    concepts = list(dict.fromkeys(df[rd.CONCEPT].astype(str)))
    keys = list(dict.fromkeys(zip(df[rd.MODEL].astype(str), df[rd.METHOD].astype(str), df[rd.VARIANT])))
    # The original model first: it is the reference every other row is read against.
    keys.sort(key=lambda k: (k[1] != rd.ORIGINAL,))
    several_models = len({k[0] for k in keys}) > 1
    labels = {k: method_label(*k, several_models) for k in keys}

    index = {}
    for rec in agg.to_dict("records"):
        index[(rec["scope"], str(rec["model"]), str(rec["method"]), str(rec["variant"]), str(rec["concept"]),
               str(rec["prompt_set"]), rec["metric"])] = rec
    rows = []
    for (model, method, variant, concept), group in df.groupby(list(GROUP), sort=False):
        ident = (str(model), str(method), str(variant), str(concept))
        row = {"model": ident[0], "method": ident[1], "variant": ident[2], "concept": ident[3],
               "label": labels[ident[:3]]}
        for col in COLUMNS:
            row[col.key] = _estimate(index.get((bm.CONCEPT_SCOPE, *ident, col.prompt_set, col.metric)))
        row["n_images"] = int(len(group))
        row["seeds"] = int(group[rd.SUITE_SEED].nunique())
        rows.append(row)
    order = {k: i for i, k in enumerate(keys)}
    corder = {c: i for i, c in enumerate(concepts)}
    rows.sort(key=lambda r: (corder[r["concept"]], order[(r["model"], r["method"], r["variant"])]))

    pooled = {key: {f"det_{ps}": _estimate(index.get((bm.POOLED_SCOPE, *key, "", ps, "detected")))
                    for ps in rd.PROMPT_SETS} for key in keys}
    return Summary(rows=rows, concepts=concepts, methods=keys, labels=labels, pooled=pooled,
                   smoke=smoke_reasons(agg))


def smoke_reasons(agg) -> list[str]:
    """Why this run's groups are too small to report (bench.metrics.size_problems)."""
    # clip_score is on every image, so its n is the group's image count
    sel = agg[(agg["scope"] == bm.CONCEPT_SCOPE) & (agg["metric"] == "clip_score")]
    if sel.empty:
        return []
    sizes = {(f"{r.model}/{r.method}/{r.variant}/{r.concept}", r.prompt_set): int(r.n)
             for r in sel.itertuples()}
    return bm.size_problems(sizes, int(sel["n_seeds"].min()))
