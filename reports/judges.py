"""The report's judge sections: do the verdicts hold under a second judge and other thresholds?

    from reports.judges import judge_sections
    for section in judge_sections(run):   # agreement, then threshold sensitivity
        print(section.title, section.answer)   # the report's summary repeats each answer

Read from the rows' judge columns (bench/core/schema.py) by bench/judging.py, with the verdicts
of the aggregates (bench/metrics.py: ``detected`` and the second judge's ``judge_detected``, each
in its own Benjamini-Hochberg family):

* **agreement**: per (concept, method, prompt set) both judges' detection rates, the share of
  images on which they agree, Cohen's kappa and the paired difference of the rates with its
  interval ("disagree" when it excludes zero), and the target verdict under each judge: an
  "erased" that holds under one judge only is named as such;
* **threshold sensitivity**: per (concept, method) and thresholded judge, the thresholds of the
  plausible range at which the concept reads as erased, and whether the verdict survives them
  all; the curves of detection against threshold are reports/judge_figures.py.
"""

from __future__ import annotations

import math

from bench import metrics as bm
from bench.core.schema import JUDGE_ROLES
from reports.metrics import Estimate, _estimate
from reports.rundata import ORIGINAL
from reports.tables import Section  # kind: agreement | threshold; curves: role -> threshold curve frame


def _listing(items: list[str], limit: int = 6) -> str:
    """Items joined by "; ", the first ``limit`` of them and a count of the rest (in the table)."""
    if len(items) <= limit:
        return "; ".join(items)
    return "; ".join(items[:limit]) + f"; and {len(items) - limit} more (see the table)"


def _verdicts(aggregates) -> dict:
    """(model, method, variant, concept) -> {"detected": Estimate, "judge_detected": Estimate} on
    target prompts."""
    out: dict = {}
    sel = aggregates[(aggregates["scope"] == bm.CONCEPT_SCOPE) & (aggregates["prompt_set"] == "target")
                     & aggregates["metric"].isin(["detected", "judge_detected"])]
    for rec in sel.to_dict("records"):
        key = (str(rec["model"]), str(rec["method"]), str(rec["variant"]), str(rec["concept"]))
        out.setdefault(key, {})[rec["metric"]] = _estimate(rec)
    return out


def erased_by(verdicts: dict) -> tuple[bool, bool]:
    """(erased under the detector, erased under the second judge) of one group's verdicts."""
    first = verdicts.get("detected", Estimate(math.nan))
    second = verdicts.get("judge_detected", Estimate(math.nan))
    return bm.erased(first.verdict), bm.erased(second.verdict)


def judge_word(verdicts: dict) -> str:
    """How a table words the erasure verdict under both judges."""
    first, second = erased_by(verdicts)
    if "judge_detected" not in verdicts or not verdicts["judge_detected"].verdict:
        return "erased" if first else "not erased"
    return {(True, True): "erased (both judges)", (True, False): "erased by the detector's reading only",
            (False, True): "erased by the second judge's reading only",
            (False, False): "not erased (either judge)"}[(first, second)]


def agreement_section(run) -> Section | None:
    from bench.judging import judge_agreement
    from reports.tables import Cell, Column, Table

    agreement = judge_agreement(run.results)
    if agreement.empty:
        return None
    verdicts = _verdicts(run.aggregates)
    columns = [Column("concept", "Concept"), Column("method", "Method"), Column("prompt_set", "Prompts"),
               Column("judges", "Detector / second judge"), Column("rate_detector", "Detector", "pct"),
               Column("rate_judge", "Second judge", "pct"),
               Column("diff", "Second minus detector", "signed_pct"),
               Column("agreement", "Agreement", "pct"), Column("kappa", "Cohen's kappa", "float"),
               Column("n", "Images", "count"), Column("verdict", "Target verdict")]
    rows, flagged, one_judge = [], [], []
    order = {"target": 0, "related": 1, "unrelated": 2}
    agreement = agreement.assign(_o=agreement["prompt_set"].map(order).fillna(9),
                                 _orig=agreement["method"] != ORIGINAL)
    for r in agreement.sort_values(["concept", "_orig", "method", "variant", "_o"]).itertuples():
        label = r.method if not r.variant else f"{r.method} ({r.variant})"
        key = (str(r.model), str(r.method), str(r.variant), str(r.concept))
        verdict = ""
        if r.prompt_set == "target" and r.method != ORIGINAL and key in verdicts:
            verdict = judge_word(verdicts[key])
            first, second = erased_by(verdicts[key])
            if first != second:
                one_judge.append(f"{label} on {r.concept} ({verdict})")
        if r.disagree:
            flagged.append(f"{label} on {r.concept}, {r.prompt_set} ({100 * r.rate_detector:.0f}% vs "
                           f"{100 * r.rate_judge:.0f}%)")
        rows.append({"concept": Cell(r.concept), "method": Cell(label), "prompt_set": Cell(r.prompt_set),
                     "judges": Cell(f"{r.detector} / {r.judge}"), "rate_detector": Cell(r.rate_detector),
                     "rate_judge": Cell(r.rate_judge), "diff": Cell(r.diff, r.diff_lo, r.diff_hi,
                                                                    flag="regression" if r.disagree else None),
                     "agreement": Cell(r.agreement), "kappa": Cell(r.kappa), "n": Cell(float(r.n)),
                     "verdict": Cell(verdict)})
    table = Table(
        name="judges", title="Judge agreement",
        caption=("Per erased concept, method and prompt set, over the images both judges read: the detection "
                 "rate under the subject's catalog detector and under its second, independent judge; their "
                 "paired difference with its 95% hierarchical bootstrap interval (flagged where it excludes "
                 "zero: the judges disagree beyond chance); the share of images on which they agree and Cohen's "
                 "kappa (blank where a judge gives one answer only; near-zero or negative where both rates are "
                 "close to 0 or 100%, since there a handful of disagreements outweighs the chance agreement: "
                 "read it with the agreement); and the target verdict under each judge (each judge's tests "
                 "Benjamini-Hochberg adjusted in a family of their own)."),
        columns=columns, rows=rows, group="concept")
    n = len(agreement)
    pooled = float((agreement["agreement"] * agreement["n"]).sum() / max(1, agreement["n"].sum()))
    kappas = agreement["kappa"].dropna()
    answer = (f"The judges agree on {100 * pooled:.0f}% of the images"
              + (f" (median kappa {kappas.median():.2f} over {len(kappas)} groups where it is defined)"
                 if len(kappas) else "")
              + f"; their rates differ beyond their intervals in {len(flagged)} of {n} groups"
              + (": " + _listing(flagged) if flagged else "") + ". "
              + ("Erasure verdicts that hold under one judge only: " + _listing(one_judge) + "."
                 if one_judge else "Every erasure verdict is the same under both judges."))
    return Section("agreement", "Judges: agreement of two independent judges", answer, table)


def robustness(run):
    """bench.judging.threshold_robustness for both judge roles, one frame."""
    import pandas as pd
    from bench.judging import threshold_robustness
    frames = [threshold_robustness(run.results, role) for role in JUDGE_ROLES]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else None


def _thresholds_text(erased_at, grid) -> str:
    """The thresholds at which a reading is erased, as runs of the grid ("0.1-0.35, 0.5")."""
    if not erased_at:
        return "none"
    if len(erased_at) == len(grid):
        return "all"
    hits = set(erased_at)
    runs, current = [], []
    for t in grid:
        if t in hits:
            current.append(t)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return ", ".join(f"{r[0]:g}" if len(r) == 1 else f"{r[0]:g}\u2013{r[-1]:g}" for r in runs)


def threshold_section(run) -> Section | None:
    from bench.judging import threshold_curves
    from reports.tables import Cell, Column, Table

    frame = robustness(run)
    if frame is None:
        return None
    verdicts = _verdicts(run.aggregates)
    columns = [Column("concept", "Concept"), Column("method", "Method"), Column("judge", "Judge"),
               Column("operating", "Operating threshold", "float"), Column("range", "Plausible range"),
               Column("verdict", "Verdict at the operating point"),
               Column("erased_at", "Erased at thresholds"),
               Column("worst", "Least change in the range", "signed_pct"), Column("survives", "Survives")]
    rows, fragile, robust, erased_total = [], [], 0, 0
    for r in frame.sort_values(["concept", "role", "method", "variant"]).itertuples():
        label = r.method if not r.variant else f"{r.method} ({r.variant})"
        est = verdicts.get((str(r.model), str(r.method), str(r.variant), str(r.concept)), {}) \
            .get("detected" if r.role == "detector" else "judge_detected", Estimate(math.nan))
        erased_here = bm.erased(est.verdict)
        survives = erased_here and r.survives
        erased_total += erased_here
        robust += survives
        if erased_here and not survives:
            fragile.append(f"{label} on {r.concept} under {r.judge} (erased at "
                           f"{_thresholds_text(r.erased_at, r.thresholds)} of {r.range_lo:g}\u2013{r.range_hi:g})")
        rows.append({"concept": Cell(r.concept), "method": Cell(label), "judge": Cell(r.judge),
                     "operating": Cell(r.operating), "range": Cell(f"{r.range_lo:g}\u2013{r.range_hi:g}"),
                     "verdict": Cell("erased" if erased_here else "not erased"),
                     "erased_at": Cell(_thresholds_text(r.erased_at, r.thresholds)),
                     "worst": Cell(r.worst_delta, math.nan, r.worst_delta_hi),
                     "survives": Cell(("yes" if survives else "no") if erased_here else "")})
    table = Table(
        name="thresholds", title="Threshold sensitivity",
        caption=("Per erased concept, method and thresholded judge: the judge's operating threshold, the "
                 "plausible range around it (0.4x to 2x, at most 0.9), the thresholds of that range at which "
                 "the concept reads as erased (exact McNemar p < 0.05 against the original's twins and the 95% "
                 "interval of the paired change in target detection below zero), the change at the threshold "
                 "where it is least clear (with the upper end of its interval), and whether an erased verdict "
                 "survives the whole range (erased at every threshold; by the intersection-union principle "
                 "each is tested at 0.05). A judge whose top label decides has no threshold and no row."),
        columns=columns, rows=rows, group="concept")
    answer = (f"{robust} of {erased_total} erasure verdicts (method, concept, judge) hold at every threshold of "
              f"the plausible range" + ("; these depend on the threshold: " + _listing(fragile) if fragile else "")
              + ".") if erased_total else "No reading is erased at its operating threshold."
    curves = {role: threshold_curves(run.results, role) for role in JUDGE_ROLES}
    return Section("threshold", "Judges: threshold sensitivity", answer, table,
                   {k: v for k, v in curves.items() if not v.empty})


def judge_sections(run) -> list[Section]:
    return [s for s in (agreement_section(run), threshold_section(run)) if s is not None]
