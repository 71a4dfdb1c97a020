"""The one metrics engine: each metric declared once, aggregated, tested and compared from it.

    from bench.metrics import aggregate, compare
    agg = aggregate(results, kid=kid_table, edits=manifest.edits)   # -> aggregates.parquet
    diff = compare(results_a, agg_a, results_b, agg_b)              # the nightly regression check

A ``Metric`` says which results column it reads, on which prompt sets it is aggregated, what
kind of observation it is (binary per image, continuous per image, a set statistic such as KID,
or a cost per edit), which direction is good on each prompt set, and how it is formatted.
``eraselab run`` writes ``aggregate``'s table, ``eraselab compare`` and ``eraselab report
--compare`` both call ``compare``, and the report reads the table: a new scorer column is
aggregated, compared and reported by adding one ``Metric`` to ``METRICS``.

Statistics (docs/protocol.md, "Statistics"): each edited image is paired with its same-seed twin
from the original model (same model, concept, prompt set, prompt id, sample and suite seed). A
group's value and the effect against the original (mean paired difference) carry hierarchical
bootstrap intervals that resample erasure seeds, then images. The test of an effect is exact
McNemar for binary metrics and Wilcoxon signed-rank for continuous ones; p-values are adjusted
by Benjamini-Hochberg over a family (all tests of one run's aggregates, or of one compare;
the second judge's tests form a family of their own, ``Metric.family``). A difference is significant when its adjusted p is below ``bench.core.stats.ALPHA``; it is
robust when the interval of the difference also excludes zero, i.e. it holds across erasure
seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.core import stats
from bench.core.schema import GROUP_KEY, ORIGINAL, PROMPT_SETS, is_reference

BINARY, CONTINUOUS, SET, EDIT = "binary", "continuous", "set", "edit"
CONCEPT_SCOPE, POOLED_SCOPE = "concept", "pooled"
NO_PROMPT_SET = ""  # per-edit metrics belong to no prompt set

# The reportable size (docs/protocol.md): fewer images or erasure seeds make a smoke result.
REPORTABLE_IMAGES = {"target": 64, "related": 32, "unrelated": 64}
REPORTABLE_SEEDS = 2


def size_problems(images_per_group: dict, n_seeds: int) -> list[str]:
    """Why groups of these sizes are not reportable (empty: they are). ``images_per_group``:
    (concept, prompt set) -> images of one method; ``n_seeds``: erasure seeds behind them."""
    problems = []
    for prompt_set, need in REPORTABLE_IMAGES.items():
        sizes = [n for (_, ps), n in images_per_group.items() if ps == prompt_set]
        if sizes and min(sizes) < need:
            problems.append(f"as few as {min(sizes)} images per {prompt_set} group; a reported number "
                            f"needs at least {need}")
    if n_seeds < REPORTABLE_SEEDS:
        problems.append(f"{n_seeds} erasure seed(s) in some group; a reported number needs at least "
                        f"{REPORTABLE_SEEDS}")
    return problems


# Verdicts of an effect, decided in one place (``verdict``).
BETTER, WORSE = "better", "worse"
BETTER_SEED_DEPENDENT, WORSE_SEED_DEPENDENT = "better (seed-dependent)", "worse (seed-dependent)"
NO_DIFFERENCE = "no difference"

# Outcomes of a comparison of two runs.
REGRESSION, IMPROVEMENT, CHANGE = "regression", "improvement", "change"


@dataclass(frozen=True)
class Metric:
    """One measured quantity and everything the engine and the report need to know about it."""

    name: str                        # the aggregate's ``metric`` value
    label: str                       # how tables and figures name it
    kind: str                        # BINARY | CONTINUOUS | SET | EDIT
    prompt_sets: tuple[str, ...]     # where it is aggregated (NO_PROMPT_SET for EDIT)
    better: dict = field(default_factory=dict)  # prompt set -> "lower" | "higher"; absent: no direction
    fmt: str = "float"               # "pct" | "float" | "seconds" | "count" | "bytes"
    column: str | None = None        # results (or KID / edit record) field; default: ``name``
    vs_original: bool = True         # tested as a paired difference from the original's twins
    family: str = "main"             # the Benjamini-Hochberg family its tests belong to

    @property
    def source(self) -> str:
        return self.column or self.name

    def direction(self, prompt_set: str) -> str | None:
        return self.better.get(prompt_set)


PRESERVATION_SETS = ("related", "unrelated")
METRICS = (
    Metric("detected", "Detection", BINARY, PROMPT_SETS,
           {"target": "lower", "related": "higher", "unrelated": "higher"}, "pct"),
    # The second, independent judge (catalog ``judge``): a check on the first, so its tests form a
    # family of their own and adding it leaves the primary verdicts' adjusted p-values unchanged.
    Metric("judge_detected", "Detection (second judge)", BINARY, PROMPT_SETS,
           {"target": "lower", "related": "higher", "unrelated": "higher"}, "pct", family="judge"),
    # On target prompts a lower CLIP score can mean erased or broken: no good direction there.
    Metric("clip_score", "CLIP score", CONTINUOUS, PROMPT_SETS,
           {"related": "higher", "unrelated": "higher"}),
    # Similarity to the twin already compares with the original: no paired test against it.
    Metric("clip_image_cosine", "Same-seed similarity", CONTINUOUS, PROMPT_SETS,
           {"related": "higher", "unrelated": "higher"}, vs_original=False),
    # KID of the edited set against the twins' set: its effect is itself, tested against 0.
    Metric("kid", "KID vs original", SET, PRESERVATION_SETS,
           {"related": "lower", "unrelated": "lower"}, column="kid_clip"),
    Metric("seconds", "Erasure seconds", EDIT, (NO_PROMPT_SET,), {NO_PROMPT_SET: "lower"}, "seconds",
           vs_original=False),
    # Weights changed plus the numbers an adapter adds: SPM and Receler change no base weight.
    Metric("params_changed", "Parameters changed or added", EDIT, (NO_PROMPT_SET,),
           {NO_PROMPT_SET: "lower"}, "count", vs_original=False, column="params_edited"),
    # The saved edit (delta.safetensors, with any tensors the edit carries for sampling).
    Metric("delta_bytes", "Edit size on disk", EDIT, (NO_PROMPT_SET,), {NO_PROMPT_SET: "lower"},
           "bytes", vs_original=False),
)
METRIC_BY_NAME = {m.name: m for m in METRICS}
BINARY_COLUMNS = tuple(m.source for m in METRICS if m.kind == BINARY)

AGGREGATE_COLUMNS = ("scope", *GROUP_KEY, "metric", "n", "n_seeds", "value", "lo", "hi", "se",
                     "seed_min", "seed_max", "n_pairs", "delta", "delta_lo", "delta_hi", "test", "p",
                     "p_adj", "verdict")
# Rows pair with their twin (or their counterpart in another run) on these columns.
TWIN_KEY = ("model", "concept", "prompt_set", "prompt_id", "sample", "suite_seed")
ROW_MATCH_KEY = ("model", "method", "variant", "concept", "prompt_set", "prompt_id", "sample", "suite_seed")


def verdict(delta: float, delta_lo: float, delta_hi: float, p_adj: float, better: str | None) -> str:
    """The one rule for "this effect is real": BH-adjusted p below ALPHA; robust when the
    interval of the difference excludes zero as well; judged better/worse by the direction."""
    if p_adj is None or math.isnan(p_adj):
        return ""
    if p_adj >= stats.ALPHA or delta == 0 or math.isnan(delta):
        return NO_DIFFERENCE
    robust = delta_hi < 0 if delta < 0 else delta_lo > 0
    if better is None:
        good = None
    else:
        good = (delta < 0) == (better == "lower")
    if good is None:
        return "lower" if delta < 0 else "higher"
    if robust:
        return BETTER if good else WORSE
    return BETTER_SEED_DEPENDENT if good else WORSE_SEED_DEPENDENT


def erased(det_target_verdict: str) -> bool:
    """Erased: target detection is robustly lower than the original's (``verdict`` BETTER)."""
    return det_target_verdict == BETTER


# -- aggregation ------------------------------------------------------------------------------
def normalise(results):
    """A results frame with the binary columns (``detected``, ``judge_detected``) as 1.0/0.0/NaN and ``variant`` as text (parquet keeps
    None/bool mixes as objects)."""
    import pandas as pd

    df = results.copy()
    for column in BINARY_COLUMNS:
        if column in df:
            df[column] = [math.nan if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
                          else float(bool(v)) for v in df[column]]
    df["variant"] = df["variant"].fillna("").astype(str)
    if "suite_seed" not in df:
        df["suite_seed"] = 0
    return df


def aggregate(results, kid=None, edits: dict | None = None):
    """The aggregates table (AGGREGATE_COLUMNS, one row per scope x group x metric) of a run.

    ``kid``: the runner's KID parts (GROUP_KEY + kid_clip, kid_clip_std); ``edits``: edit id ->
    bench.manifest.EditRecord (the manifest's edits: seconds, params_changed)."""
    import pandas as pd

    df = normalise(results)
    twins = _twin_index(df)
    out = []
    for key, g in df.groupby(list(GROUP_KEY), sort=True, dropna=False):
        group = dict(zip(GROUP_KEY, key))
        for metric in METRICS:
            if metric.kind in (BINARY, CONTINUOUS) and group["prompt_set"] in metric.prompt_sets \
                    and metric.source in g:
                out.append(_per_image_row(CONCEPT_SCOPE, group, metric, g, twins))
    for key, g in df.groupby(["model", "method", "variant", "prompt_set"], sort=True, dropna=False):
        group = {**dict(zip(("model", "method", "variant", "prompt_set"), key)), "concept": ""}
        g = g.assign(_cluster=list(zip(g["concept"], g["suite_seed"])))  # each edit a cluster
        for metric in METRICS:
            if metric.kind in (BINARY, CONTINUOUS) and group["prompt_set"] in metric.prompt_sets \
                    and metric.source in g:
                out.append(_per_image_row(POOLED_SCOPE, group, metric, g, twins, cluster="_cluster"))
    out += _kid_rows(kid)
    out += _edit_rows(df, edits or {})
    agg = pd.DataFrame(out, columns=list(AGGREGATE_COLUMNS))
    families = agg["metric"].map(lambda m: METRIC_BY_NAME[m].family)
    for family in sorted(set(families)):
        tested = (agg["scope"] == CONCEPT_SCOPE) & (families == family)
        agg.loc[tested, "p_adj"] = stats.benjamini_hochberg(agg.loc[tested, "p"].astype(float).tolist())
    agg["verdict"] = [
        verdict(r.delta, r.delta_lo, r.delta_hi, r.p_adj, METRIC_BY_NAME[r.metric].direction(r.prompt_set))
        for r in agg.itertuples()]
    for col in ("n", "n_seeds", "n_pairs"):
        agg[col] = agg[col].fillna(0).astype(int)
    return agg


def _empty_row(scope: str, group: dict, metric: Metric) -> dict:
    row = {c: math.nan for c in AGGREGATE_COLUMNS}
    row.update(scope=scope, **group, metric=metric.name, test="", verdict="", n=0, n_seeds=0, n_pairs=0)
    return row


def _per_image_row(scope, group, metric, g, twins, cluster: str = "suite_seed") -> dict:
    import numpy as np
    import pandas as pd

    row = _empty_row(scope, group, metric)
    values = pd.to_numeric(g[metric.source], errors="coerce").to_numpy(dtype=float)
    clusters = _cluster_ids(g[cluster])
    ok = ~np.isnan(values)
    row["n"] = int(ok.sum())
    if not ok.any():
        return row
    row["value"], row["lo"], row["hi"] = stats.hierarchical_bootstrap(values, clusters)
    spread = stats.cluster_means(values, clusters)
    row["n_seeds"] = len(spread)
    row["seed_min"], row["seed_max"] = min(spread.values()), max(spread.values())
    if twins is not None and metric.vs_original and not is_reference(group["method"], group["variant"]):
        twin = _twin_values(g, twins, metric.source)
        pair = ok & ~np.isnan(twin)
        row["n_pairs"] = int(pair.sum())
        if pair.any():
            d = values[pair] - twin[pair]
            row["delta"], row["delta_lo"], row["delta_hi"] = stats.hierarchical_bootstrap(d, clusters[pair])
            row["test"], row["p"] = paired_test(metric, twin[pair], values[pair])
    return row


def contrast(results, a: tuple, b: tuple, prompt_set: str, metric_name: str = "detected") -> dict:
    """Arm ``b`` minus arm ``a`` (each a (model, method, variant) key) on one prompt set, paired
    image by image over the prompts, samples and seeds both arms drew, pooled over the concepts
    both erased: {"delta", "delta_lo", "delta_hi", "n_pairs", "test", "p"}. Intervals resample
    the (concept, erasure seed) clusters first, as every pooled interval does."""
    import numpy as np

    metric = METRIC_BY_NAME[metric_name]
    df = normalise(results)
    key = ["concept", "prompt_id", "sample", "suite_seed"]

    def arm(k):
        sel = df[(df["model"] == k[0]) & (df["method"] == k[1]) & (df["variant"] == k[2])
                 & (df["prompt_set"] == prompt_set)]
        return sel.drop_duplicates(key).set_index(key)[metric.source]

    import pandas as pd
    both = pd.concat([arm(a).rename("a"), arm(b).rename("b")], axis=1, join="inner")
    both = both.apply(pd.to_numeric, errors="coerce").dropna()
    out = {"delta": math.nan, "delta_lo": math.nan, "delta_hi": math.nan, "n_pairs": int(len(both)),
           "test": "", "p": math.nan}
    if both.empty:
        return out
    clusters = _cluster_ids(list(zip(both.index.get_level_values("concept"),
                                     both.index.get_level_values("suite_seed"))))
    d = both["b"].to_numpy(dtype=float) - both["a"].to_numpy(dtype=float)
    out["delta"], out["delta_lo"], out["delta_hi"] = stats.hierarchical_bootstrap(d, clusters)
    out["test"], out["p"] = paired_test(metric, both["a"].to_numpy(dtype=float), both["b"].to_numpy(dtype=float))
    return out


def paired_test(metric: Metric, a, b) -> tuple[str, float]:
    """(test name, p) for paired observations ``a`` -> ``b`` of a per-image metric."""
    if metric.kind == BINARY:
        return "mcnemar-exact", stats.mcnemar_exact(a, b)
    return "wilcoxon-signed-rank", stats.wilcoxon_paired(b - a)


def unpaired_test(metric: Metric, a, b) -> tuple[str, float]:
    """(test name, p) for two unpaired samples of a per-image metric."""
    if metric.kind == BINARY:
        return "fisher-exact", stats.fisher_exact(a, b)
    return "mann-whitney-u", stats.mann_whitney(a, b)


def _cluster_ids(column):
    """Integer cluster labels for any hashable cluster values (seeds, (concept, seed) tuples)."""
    import numpy as np

    labels = {v: i for i, v in enumerate(sorted(set(column), key=repr))}
    return np.asarray([labels[v] for v in column], dtype=int)


def _twin_index(df):
    originals = df[[is_reference(m, v) for m, v in zip(df["method"], df["variant"])]]
    return originals.drop_duplicates(list(TWIN_KEY)).set_index(list(TWIN_KEY))


def _twin_values(g, twins, column: str):
    import numpy as np
    import pandas as pd

    if column not in twins or twins.empty:
        return np.full(len(g), np.nan)
    keys = pd.MultiIndex.from_frame(g[list(TWIN_KEY)])
    matched = twins.reindex(keys)
    values = pd.to_numeric(matched[column], errors="coerce").to_numpy(dtype=float)
    # a twin must have been drawn from the same image seed, or it is not a twin
    same_seed = (matched["seed"].to_numpy() == g["seed"].to_numpy()) if "seed" in g else True
    return np.where(same_seed, values, np.nan)


def _kid_rows(kid) -> list[dict]:
    if kid is None or len(kid) == 0:
        return []
    metric = METRIC_BY_NAME["kid"]
    rows = []
    for r in kid.to_dict("records"):
        if r.get("prompt_set") not in metric.prompt_sets:
            continue
        group = {k: ("" if k == "variant" and r.get(k) is None else r.get(k)) for k in GROUP_KEY}
        row = _empty_row(CONCEPT_SCOPE, group, metric)
        value, se = float(r.get(metric.source, math.nan)), float(r.get(f"{metric.source}_std", math.nan))
        row.update(value=value, se=se, lo=value - 1.96 * se, hi=value + 1.96 * se,
                   n=int(r.get("n_edited") or 0))
        if metric.vs_original:  # KID is 0 in expectation when the two sets share a distribution
            row.update(delta=value, delta_lo=row["lo"], delta_hi=row["hi"], test="z-test",
                       p=stats.z_test(value, se))
        rows.append(row)
    return rows


def _edit_rows(df, edits: dict) -> list[dict]:
    import numpy as np

    rows = []
    keys = ("model", "method", "variant", "concept")
    for key, g in df.groupby(list(keys), sort=True, dropna=False):
        group = {**dict(zip(keys, key)), "prompt_set": NO_PROMPT_SET}
        if is_reference(group["method"], group["variant"]):
            continue
        records = [edits[e] for e in sorted(set(g["edit_id"].dropna().astype(str))) if e in edits] \
            if "edit_id" in g else []
        for metric in METRICS:
            if metric.kind != EDIT:
                continue
            values = [float(getattr(r, metric.source)) for r in records
                      if getattr(r, metric.source, None) is not None]
            row = _empty_row(CONCEPT_SCOPE, group, metric)
            row["n"] = row["n_seeds"] = len(values)
            if values:
                row["value"] = float(np.mean(values))
                row["seed_min"], row["seed_max"] = min(values), max(values)
                if len(values) > 1:  # one edit is one measurement: no interval
                    _, row["lo"], row["hi"] = stats.hierarchical_bootstrap(values, list(range(len(values))))
            rows.append(row)
    return rows


# -- comparison of two runs -------------------------------------------------------------------
COMPARE_COLUMNS = (*GROUP_KEY, "metric", "a", "b", "delta", "delta_lo", "delta_hi", "paired", "test",
                   "p", "p_adj", "outcome")


@dataclass
class Comparison:
    """The differences between run A (the reference) and run B, one row per group x metric."""

    rows: list[dict]
    missing: list[dict]              # groups only in A
    new: list[dict]                  # groups only in B

    @property
    def regressions(self) -> list[dict]:
        return [r for r in self.rows if r["outcome"] == REGRESSION]

    @property
    def improvements(self) -> list[dict]:
        return [r for r in self.rows if r["outcome"] == IMPROVEMENT]

    @property
    def changes(self) -> list[dict]:
        return [r for r in self.rows if r["outcome"] == CHANGE]

    def to_dict(self) -> dict:
        return {"compared": len({tuple(r[k] for k in GROUP_KEY) for r in self.rows}),
                "tests": len(self.rows), "regressions": self.regressions,
                "improvements": self.improvements, "changes": self.changes,
                "missing": self.missing, "new": self.new, "rows": self.rows,
                "family": "Benjamini-Hochberg over all tests of this comparison", "alpha": stats.ALPHA}


def compare(results_a, agg_a, results_b, agg_b) -> Comparison:
    """Every metric of every group present in both runs, tested; BH over the whole comparison.

    Rows pair image by image when both runs hold the same rows drawn from the same image seeds
    (the normal nightly case: same suite, new code); otherwise the groups are compared unpaired."""
    a, b = normalise(results_a), normalise(results_b)
    ga = {k: g for k, g in a.groupby(list(GROUP_KEY), sort=True, dropna=False)}
    gb = {k: g for k, g in b.groupby(list(GROUP_KEY), sort=True, dropna=False)}
    rows = []
    for key in sorted(set(ga) & set(gb), key=repr):
        group = dict(zip(GROUP_KEY, key))
        for metric in METRICS:
            if metric.kind in (BINARY, CONTINUOUS) and group["prompt_set"] in metric.prompt_sets:
                row = _compare_per_image(group, metric, ga[key], gb[key])
                if row is not None:
                    rows.append(row)
    rows += _compare_aggregates(agg_a, agg_b)
    adjusted = stats.benjamini_hochberg([r["p"] for r in rows])
    for r, p_adj in zip(rows, adjusted):
        r["p_adj"] = p_adj
        r["outcome"] = _outcome(r)
    missing = [dict(zip(GROUP_KEY, k)) for k in sorted(set(ga) - set(gb), key=repr)]
    new = [dict(zip(GROUP_KEY, k)) for k in sorted(set(gb) - set(ga), key=repr)]
    return Comparison(rows=rows, missing=missing, new=new)


def _compare_per_image(group, metric, ga, gb) -> dict | None:
    import numpy as np
    import pandas as pd

    col = metric.source
    if col not in ga or col not in gb:
        return None
    va = pd.to_numeric(ga[col], errors="coerce").to_numpy(dtype=float)
    vb = pd.to_numeric(gb[col], errors="coerce").to_numpy(dtype=float)
    if np.isnan(va).all() or np.isnan(vb).all():
        return None
    row = {**group, "metric": metric.name, "a": float(np.nanmean(va)), "b": float(np.nanmean(vb))}
    merged = ga[list(ROW_MATCH_KEY) + ["seed", col]].merge(
        gb[list(ROW_MATCH_KEY) + ["seed", col]], on=list(ROW_MATCH_KEY), suffixes=("_a", "_b"))
    paired = len(merged) == len(ga) == len(gb) and bool((merged["seed_a"] == merged["seed_b"]).all())
    if paired:
        xa = pd.to_numeric(merged[f"{col}_a"], errors="coerce").to_numpy(dtype=float)
        xb = pd.to_numeric(merged[f"{col}_b"], errors="coerce").to_numpy(dtype=float)
        ok = ~(np.isnan(xa) | np.isnan(xb))
        d = xb[ok] - xa[ok]
        row["delta"], row["delta_lo"], row["delta_hi"] = stats.hierarchical_bootstrap(
            d, _cluster_ids(merged["suite_seed"][ok]))
        row["test"], row["p"] = paired_test(metric, xa[ok], xb[ok])
    else:
        row["delta"] = row["b"] - row["a"]
        row["delta_lo"], row["delta_hi"] = stats.unpaired_difference_interval(
            va, _cluster_ids(ga["suite_seed"]), vb, _cluster_ids(gb["suite_seed"]))
        row["test"], row["p"] = unpaired_test(metric, va, vb)
    row["paired"] = paired
    return row


def _compare_aggregates(agg_a, agg_b) -> list[dict]:
    """Set metrics (KID) from the two aggregates tables: a z-test on their standard errors."""
    rows = []
    if agg_a is None or agg_b is None:
        return rows
    sets = [m.name for m in METRICS if m.kind == SET]
    key = [*GROUP_KEY, "metric"]
    sel_a = agg_a[(agg_a["scope"] == CONCEPT_SCOPE) & agg_a["metric"].isin(sets)]
    sel_b = agg_b[(agg_b["scope"] == CONCEPT_SCOPE) & agg_b["metric"].isin(sets)]
    merged = sel_a.merge(sel_b, on=key, suffixes=("_a", "_b"))
    for r in merged.to_dict("records"):
        va, vb, sa, sb = r["value_a"], r["value_b"], r["se_a"], r["se_b"]
        if any(math.isnan(float(x)) for x in (va, vb)):
            continue
        se = math.sqrt((0 if math.isnan(sa) else sa) ** 2 + (0 if math.isnan(sb) else sb) ** 2)
        delta = float(vb) - float(va)
        rows.append({**{k: r[k] for k in key}, "a": float(va), "b": float(vb), "delta": delta,
                     "delta_lo": delta - 1.96 * se, "delta_hi": delta + 1.96 * se, "paired": False,
                     "test": "z-test", "p": stats.z_test(delta, se)})
    return rows


def _outcome(row: dict) -> str:
    p_adj = row.get("p_adj")
    if p_adj is None or math.isnan(p_adj) or p_adj >= stats.ALPHA or row["delta"] == 0:
        return ""
    better = METRIC_BY_NAME[row["metric"]].direction(row["prompt_set"])
    if better is None or row["method"] == ORIGINAL:  # the reference itself moved: a change, not a fault
        return CHANGE
    worse = (row["delta"] > 0) == (better == "lower")
    return REGRESSION if worse else IMPROVEMENT


def format_comparison(result: Comparison, a_name: str, b_name: str) -> str:
    """The plain-text report of ``eraselab compare``."""
    lines = [f"compared {result.to_dict()['compared']} groups ({len(result.rows)} tests, Benjamini-"
             f"Hochberg at q = {stats.ALPHA}): {a_name} -> {b_name}"]
    for r in result.rows:
        if not r["outcome"]:
            continue
        variant = f"[{r['variant']}]" if r["variant"] else ""
        lines.append(f"{r['outcome'].upper():11s} {r['model']} {r['method']}{variant} {r['concept']!r} "
                     f"{r['prompt_set']}: {r['metric']} {r['a']:.4f} -> {r['b']:.4f} "
                     f"(difference {r['delta']:+.4f} [{r['delta_lo']:+.4f}, {r['delta_hi']:+.4f}], "
                     f"{r['test']}, adjusted p {r['p_adj']:.2g})")
    for kind, items in (("missing", result.missing), ("new", result.new)):
        for r in items:
            lines.append(f"{kind.upper():11s} {r['model']} {r['method']} {r['concept']!r} {r['prompt_set']}")
    lines.append(f"{len(result.regressions)} regressions, {len(result.improvements)} improvements, "
                 f"{len(result.changes)} other changes, {len(result.missing)} missing, {len(result.new)} new")
    return "\n".join(lines)
