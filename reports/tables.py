"""The table model: every report table is built once here and rendered three ways by render.py.

    from reports.tables import main_table
    table = main_table(summary)           # summary: reports.metrics.Summary
    table.rows[0]["det_target"].value     # the number, before any formatting

A ``Table`` holds typed cells (a value with its 95% interval and flags such as "best"), never
pre-formatted strings, so the Markdown, LaTeX and HTML versions cannot disagree, and tests can
compare cells with numbers computed from the rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.metrics import BETTER, BETTER_SEED_DEPENDENT, METRIC_BY_NAME
from bench.metrics import erased as is_erased
from reports.metrics import METRICS, Estimate, Summary
from reports.rundata import ORIGINAL


@dataclass
class Cell:
    value: object                   # float for numbers, str for text
    lo: float = math.nan
    hi: float = math.nan
    best: bool = False
    flag: str | None = None         # "regression" | "improvement" | None
    kind: str | None = None         # overrides the column's format (tables mixing metrics)

    @classmethod
    def of(cls, est: Estimate) -> "Cell":
        return cls(est.value, est.lo, est.hi)

    @property
    def missing(self) -> bool:
        return self.value is None or (isinstance(self.value, float) and math.isnan(self.value))


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str = "text"              # "text" | "pct" | "float" | "seconds" | "count" | "bytes" | "signed_pct" ...
    better: str | None = None       # "lower" | "higher": shown as an arrow, and which cell is best

    @property
    def arrow(self) -> str:
        return {"lower": "\u2193", "higher": "\u2191"}.get(self.better or "", "")


@dataclass
class Table:
    name: str                       # file stem: tables/<name>.md, .tex
    title: str
    caption: str
    columns: list[Column]
    rows: list[dict]                # column key -> Cell
    group: str | None = None        # column whose repeated values form row groups (a rule between)
    notes: list[str] = field(default_factory=list)

    def column(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)


@dataclass
class Section:
    """A report section read from a run (judges, resurgence): its table with a title, the
    one-sentence answer, and the data its figures draw (``curves``)."""

    kind: str
    title: str
    answer: str
    table: Table
    curves: dict = field(default_factory=dict)


def fmt_number(value, kind: str) -> str:
    """One number as the report prints it; every renderer uses this, so the formats agree."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2014"
    if kind == "text":
        return str(value)
    v = float(value)
    if kind == "pct":
        return f"{100 * v:.0f}%"
    if kind == "signed_pct":
        return f"{round(100 * v) + 0:+d} pt"
    if kind == "float":
        return f"{v:.3f}"
    if kind == "signed_float":
        return f"{round(v, 3) + 0.0:+.3f}"  # + 0.0 turns -0.0 into 0.0: no "-0.000"
    if kind == "p":
        return "<0.001" if v < 0.001 else f"{v:.2g}"
    if kind == "seconds":
        return f"{v:.2g} s" if v < 10 else f"{v:.0f} s"
    if kind == "count":
        for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(v) >= div:
                return f"{v / div:.3g}{suffix}"
        return f"{v:.0f}"
    if kind == "bytes":
        for div, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(v) >= div:
                return f"{v / div:.3g} {suffix}"
        return f"{v:.0f} B"
    return str(value)


def fmt_interval(cell: Cell, kind: str) -> str:
    """The cell's 95% interval as "[lo, hi]" in the column's units, or "" when it has none."""
    if cell.missing or math.isnan(cell.lo) or math.isnan(cell.hi) or kind == "text":
        return ""
    if kind == "pct":
        return f"[{100 * cell.lo:.0f}, {100 * cell.hi:.0f}]"
    return f"[{fmt_number(cell.lo, kind)}, {fmt_number(cell.hi, kind)}]"


def mark_best(table: Table, candidate=lambda row, key: True) -> None:
    """Flag the best cell of every column with a direction, within each row group.

    Ties for best are all marked, but when every candidate has the same value nothing is (a
    column where all methods score 100% has no best). Only rows for which
    ``candidate(row, column_key)`` holds compete (the original model is the reference, not a
    candidate).
    """
    groups: dict[object, list[dict]] = {}
    for row in table.rows:
        key = row[table.group].value if table.group else None
        groups.setdefault(key, []).append(row)
    for column in table.columns:
        if column.better is None:
            continue
        for rows in groups.values():
            cells = [r[column.key] for r in rows if candidate(r, column.key) and not r[column.key].missing]
            if len(cells) < 2:  # a single candidate is not "best" of anything
                continue
            values = [float(c.value) for c in cells]
            best = min(values) if column.better == "lower" else max(values)
            if all(math.isclose(v, best, rel_tol=1e-9, abs_tol=1e-12) for v in values):
                continue
            for c in cells:
                c.best = math.isclose(float(c.value), best, rel_tol=1e-9, abs_tol=1e-12)


def erasure_word(verdict: str, delta: float) -> str:
    """How every table words the verdict of a change in target detection (bench.metrics.verdict)."""
    if not verdict:
        return ""
    return {BETTER: "erased", BETTER_SEED_DEPENDENT: "erased in these edits, not across seeds"}.get(
        verdict, "NOT established" if delta < 0 else "NOT erased")


def target_verdict(row: dict) -> str:
    """The main table's and the summary's wording of one row's target-detection verdict, with
    the second judge's where it differs (an erasure one judge only sees is named as such)."""
    est = row["det_target"]
    if row["method"] == ORIGINAL or not est.verdict:
        return ""
    word = erasure_word(est.verdict, est.delta) + (" (single erasure seed)" if est.single_seed else "")
    return word + second_judge_note(row)


def second_judge_note(row: dict) -> str:
    """"" when the second judge agrees with the detector's erasure verdict (or there is none)."""
    second = row.get("judge_target")
    if second is None or not second.verdict:
        return ""
    first_erased, second_erased = is_erased(row["det_target"].verdict), is_erased(second.verdict)
    if first_erased and not second_erased:
        return f"; the second judge does NOT confirm it ({fmt_number(second.value, 'pct')} detected)"
    if second_erased and not first_erased:
        return f"; the second judge reads it as erased ({fmt_number(second.value, 'pct')} detected)"
    return ""


def main_table(summary: Summary) -> Table:
    """Per concept x method: erasure (with the paired change and its verdict), preservation and
    cost, each with its 95% interval."""
    columns = [Column("concept", "Concept"), Column("method", "Method")]
    columns += [Column(m.key, m.label, m.kind, m.better) for m in METRICS]
    columns[3:3] = [Column("det_change", "Change in target detection", "signed_pct", "lower"),
                    Column("det_p", "Adjusted p", "p"), Column("verdict", "Verdict"),
                    Column("det_seeds", "Target detection per erasure seed", "text")]
    rows = []
    for r in summary.rows:
        est = r["det_target"]
        erased = r["method"] != ORIGINAL and is_erased(est.verdict)
        row = {"concept": Cell(r["concept"]), "method": Cell(r["label"]), "_method": r["method"],
               "_erased": erased,
               "det_change": Cell(est.delta, est.delta_lo, est.delta_hi),
               "det_p": Cell(est.p_adj), "verdict": Cell(target_verdict(r)),
               "det_seeds": Cell(_seed_spread(est))}
        for m in METRICS:
            row[m.key] = Cell.of(r[m.key])
        rows.append(row)
    # Drop columns no row has a value for (e.g. KID when the runner wrote no aggregates).
    keys = [c.key for c in columns[2:]]
    empty = {k for k in keys if all(row[k].missing or row[k].value == "" for row in rows)}
    table = Table(
        name="main", title="Erasure, preservation and cost",
        caption=("Per erased concept and method: detection rate on target prompts (lower is better); its change "
                 "from the original model, the mean paired difference over same-seed image twins with its 95% "
                 "hierarchical bootstrap interval (erasure seeds, then images); the Benjamini-Hochberg adjusted "
                 "p of exact McNemar's test over every test of the run; the verdict (erased: adjusted p < 0.05 "
                 "and the interval of the change below zero); each erasure seed's own target detection; "
                 "detection on related and unrelated prompts (higher is better); CLIP score (on target prompts "
                 "without a better direction: lower can mean erased or broken); same-seed CLIP image "
                 "similarity and KID against the original model on unrelated prompts; and the cost of the "
                 "edit. Brackets: 95% intervals. Bold: best method per concept and column; preservation and "
                 "cost are compared only among methods that erased the concept (a method that changes nothing "
                 "preserves everything), and the original model is the reference."),
        columns=[c for c in columns if c.key not in empty], rows=rows, group="concept")
    if empty:
        table.notes.append("not available in this run: " + ", ".join(
            c.header for c in columns if c.key in empty))
    mark_best(table, candidate=lambda row, key: row["_method"] != ORIGINAL
              and (key in ("det_target", "det_change") or row["_erased"]))
    return table


def overview_table(summary: Summary) -> Table:
    """One row per method over every erased concept: its target detection on each (with the
    verdict), how many it erased, unrelated detection pooled over concepts, and the edit's cost
    as the median over concepts. The main table holds every number behind it."""
    import statistics

    columns = [Column("method", "Method")]
    columns += [Column(f"target_{i}", f"Target: {c}", "pct", "lower") for i, c in enumerate(summary.concepts)]
    columns += [Column("erased", "Erased"), Column("unrelated", "Unrelated (pooled)", "pct", "higher"),
                Column("seconds", f"{METRIC_BY_NAME['seconds'].label} (median)", "seconds", "lower"),
                Column("params_changed", f"{METRIC_BY_NAME['params_changed'].label} (median)", "count", "lower"),
                Column("delta_bytes", "Edit size (median)", "bytes", "lower")]
    rows = []
    for key in summary.methods:
        per_concept = [summary.row(c, key) for c in summary.concepts]
        row = {"method": Cell(summary.labels[key]), "_method": key[1]}
        erased = 0
        for i, r in enumerate(per_concept):
            est = r["det_target"] if r is not None else Estimate(math.nan)
            erased += key[1] != ORIGINAL and is_erased(est.verdict)
            row[f"target_{i}"] = Cell.of(est)
        judged = sum(1 for r in per_concept if r is not None and r["det_target"].verdict)
        row["erased"] = Cell("" if key[1] == ORIGINAL else f"{erased} of {judged}")
        row["unrelated"] = Cell.of(summary.pooled[key]["det_unrelated"])
        for name in ("seconds", "params_changed", "delta_bytes"):
            values = [r[name].value for r in per_concept if r is not None and not r[name].missing]
            row[name] = Cell(statistics.median(values) if values else math.nan)
        rows.append(row)
    return Table(
        name="overview", title="Every method at a glance",
        caption=("Per method: detection rate on each concept's target prompts (lower is better); how many "
                 "concepts it erased by the main table's verdict (the paired change from the original model's "
                 "same-seed twins significant after Benjamini-Hochberg, its 95% interval below zero); detection on unrelated prompts pooled over concepts (higher is "
                 "better; each erasure a cluster of the bootstrap); and the edit's cost, the median over "
                 "concepts. Brackets: 95% intervals."),
        columns=columns, rows=rows)


def _seed_spread(est) -> str:
    if est.missing or est.n_seeds == 0:
        return ""
    if est.n_seeds == 1:
        return "one seed"
    return f"{100 * est.seed_min:.0f}\u2013{100 * est.seed_max:.0f}% over {est.n_seeds} seeds"


def mapping_table(analyses: list[dict]) -> Table:
    """What each erased concept became: top label before/after and whether it is the parent."""
    columns = [Column("concept", "Concept"), Column("method", "Method"),
               Column("space", "Label space"), Column("parent", "Recorded parent"),
               Column("before_top", "Top label before"), Column("before_share", "Share before", "pct"),
               Column("after_top", "Top label after"), Column("after_share", "Share after", "pct"),
               Column("to_parent", "Maps to parent"),
               Column("self_drop", "Self share drop", "pct", "higher")]
    rows = []
    for a in analyses:
        rows.append({
            "concept": Cell(a["concept"]), "method": Cell(a["label"]),
            "space": Cell(a.get("space", "\u2014")),
            "parent": Cell(a.get("parent") or "\u2014"),
            "before_top": Cell(a.get("before_top_label", "\u2014")),
            "before_share": Cell(float(a.get("before_top_share", math.nan))),
            "after_top": Cell(a.get("after_top_label", "\u2014")),
            "after_share": Cell(float(a.get("after_top_share", math.nan))),
            "to_parent": Cell("yes" if a.get("after_is_parent") else "no"),
            "self_drop": Cell(float(a.get("self_share_drop", math.nan))),
        })
    table = Table(
        name="mapping", title="What the erased concept became",
        caption=("Zero-shot CLIP label of the images of target prompts, before erasure (original model) and "
                 "after (the erasing method): the most frequent label and its share of images, and whether "
                 "it is the catalog's recorded parent (the paper's \u201cSnoopy \u2192 dog\u201d claim). "
                 "Label space: the labels an image is classified among \u2014 a style's images among the "
                 "catalog's styles and \u201cplain\u201d (styles), every other concept's among the non-style "
                 "labels and \u201cnothing\u201d (objects). "
                 "Self share drop: how much of the images stopped being labelled as the concept itself."),
        columns=columns, rows=rows, group="concept")
    mark_best(table)
    return table
