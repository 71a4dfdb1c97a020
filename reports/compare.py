"""Differences between two runs (``eraselab report RUN --compare BASELINE``), as a table model.

    from reports.compare import compare_table
    table, regressions = compare_table(summary, baseline_summary)

Rows are matched on (concept, model, method, variant). A difference counts only when it lies
beyond both runs' 95% intervals (each value outside the other's interval); it is a regression
when it goes the metric's bad way (e.g. higher detection on target prompts), an improvement
otherwise. Metrics without an interval (a single timing) are shown but never flagged.
"""

from __future__ import annotations

from reports.metrics import METRICS, Summary
from reports.tables import Cell, Column, Table, fmt_number


def compare_table(current: Summary, baseline: Summary) -> tuple[Table, list[str]]:
    index = {(r["concept"], r["model"], r["method"], r["variant"]): r for r in baseline.rows}
    rows, regressions, unmatched = [], [], []
    for r in current.rows:
        b = index.pop((r["concept"], r["model"], r["method"], r["variant"]), None)
        if b is None:
            unmatched.append(f"{r['label']} on {r['concept']} (only in this run)")
            continue
        for m in METRICS:
            now, then = r[m.key], b[m.key]
            if now.missing and then.missing:
                continue
            verdict, flag = "", None
            if m.better and now.separated_from(then):
                worse = now.value > then.value if m.better == "lower" else now.value < then.value
                verdict, flag = ("REGRESSION", "regression") if worse else ("improvement", "improvement")
                if worse:
                    regressions.append(f"{r['label']} on {r['concept']}: {m.label} "
                                       f"{fmt_number(then.value, m.kind)} \u2192 {fmt_number(now.value, m.kind)}")
            kind = {"pct": "signed_pct", "float": "signed_float"}.get(m.kind, m.kind)
            delta = (now.value - then.value) if not (now.missing or then.missing) else float("nan")
            rows.append({"concept": Cell(r["concept"]), "method": Cell(r["label"]),
                         "metric": Cell(f"{m.label} {'(lower is better)' if m.better == 'lower' else ''}".strip()),
                         "now": Cell(now.value, now.lo, now.hi, flag=flag, kind=m.kind),
                         "then": Cell(then.value, then.lo, then.hi, kind=m.kind),
                         "delta": Cell(delta, kind=kind), "verdict": Cell(verdict, flag=flag)})
    unmatched += [f"{b['label']} on {b['concept']} (only in the baseline)" for b in index.values()]
    table = Table(
        name="compare", title="Differences from the baseline run",
        caption=("This run against the baseline, per concept, method and metric, with 95% intervals. A "
                 "difference is flagged only when it lies beyond both intervals; REGRESSION: it goes the "
                 "metric's bad way."),
        columns=[Column("concept", "Concept"), Column("method", "Method"), Column("metric", "Metric"),
                 Column("now", "This run", "float"), Column("then", "Baseline", "float"),
                 Column("delta", "Difference", "float"), Column("verdict", "Verdict")],
        rows=rows, group="concept", notes=[f"not compared: {u}" for u in unmatched])
    return table, regressions
