"""The comparison with a baseline run (``eraselab report RUN --compare BASELINE``), as a table.

    from bench.rundir import compare_runs
    from reports.compare import compare_table
    table, regressions = compare_table(compare_runs(baseline_dir, run_dir)[0], labels)

The numbers and outcomes are ``bench.metrics.compare``'s, the same ones ``eraselab compare``
prints: this module only lays them out. Every tested (concept, method, metric) is a row; a row is
flagged when its Benjamini-Hochberg adjusted p is below 0.05, as a REGRESSION when it goes the
metric's bad way.
"""

from __future__ import annotations

from bench import metrics as bm
from reports.metrics import method_label
from reports.tables import Cell, Column, Table, fmt_number


def compare_table(result: bm.Comparison, several_models: bool = False) -> tuple[Table, list[str]]:
    rows, regressions = [], []
    for r in result.rows:
        metric = bm.METRIC_BY_NAME[r["metric"]]
        label = method_label(str(r["model"]), str(r["method"]), str(r["variant"]), several_models)
        where = f"{metric.label}, {r['prompt_set']}"
        flag = {bm.REGRESSION: "regression", bm.IMPROVEMENT: "improvement"}.get(r["outcome"])
        if r["outcome"] == bm.REGRESSION:
            regressions.append(f"{label} on {r['concept']}: {where} {fmt_number(r['a'], metric.fmt)} "
                               f"\u2192 {fmt_number(r['b'], metric.fmt)}")
        kind = {"pct": "signed_pct", "float": "signed_float"}.get(metric.fmt, metric.fmt)
        rows.append({"concept": Cell(r["concept"]), "method": Cell(label), "metric": Cell(where),
                     "then": Cell(r["a"], kind=metric.fmt), "now": Cell(r["b"], kind=metric.fmt),
                     "delta": Cell(r["delta"], r["delta_lo"], r["delta_hi"], flag=flag, kind=kind),
                     "p_adj": Cell(r["p_adj"], kind="p"), "test": Cell(r["test"]),
                     "verdict": Cell(r["outcome"].upper() if r["outcome"] == bm.REGRESSION else r["outcome"],
                                     flag=flag)})
    notes = [f"only in the baseline: {g['method']} on {g['concept']} ({g['prompt_set']})" for g in result.missing]
    notes += [f"only in this run: {g['method']} on {g['concept']} ({g['prompt_set']})" for g in result.new]
    table = Table(
        name="compare", title="Differences from the baseline run",
        caption=("This run against the baseline, per concept, method and metric: the difference (this run "
                 "minus the baseline) with its 95% hierarchical bootstrap interval, the test (paired image "
                 "by image when both runs drew the same seeds) and its Benjamini-Hochberg adjusted p over "
                 "every test of the comparison. Flagged when the adjusted p is below 0.05; REGRESSION: it "
                 "goes the metric's bad way."),
        columns=[Column("concept", "Concept"), Column("method", "Method"), Column("metric", "Metric"),
                 Column("then", "Baseline", "float"), Column("now", "This run", "float"),
                 Column("delta", "Difference", "float"), Column("test", "Test"),
                 Column("p_adj", "Adjusted p", "p"), Column("verdict", "Verdict")],
        rows=rows, group="concept", notes=notes)
    return table, regressions
