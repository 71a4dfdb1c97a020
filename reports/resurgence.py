"""The report's resurgence sections: does an erased concept come back?

    from reports.resurgence import resurgence_studies
    for section in resurgence_studies(run):     # from the rows' resurgence columns
        print(section.title, section.answer)    # section.table: a reports.tables.Table

Read from the rows a suite's ``resurgence:`` section planned (bench/runner/resurgence_plan.py,
columns bench/core/schema.py ``RESURGENCE_COLUMNS``), per concept, with the aggregates' values
and intervals (bench/metrics.py) and arm-vs-arm paired contrasts (``bench.metrics.contrast``)
whose p values are Benjamini-Hochberg adjusted within each section:

* **fine-tuning and relearning**: per (chain, arm, concept) the target detection at step 0 and at
  the last step, the paired change between them, the difference from the control (the original
  model fine-tuned alike) at the last step, the resurgence fraction
  R = (D_N - D_0) / (D_original - D_0), and the first step at which the concept is **back**: the
  95% interval of its paired change from the original model reaches zero (it is no longer
  distinguishable from a model that never erased it). An arm whose step-0 interval already
  reaches zero is "not erased";
* **sampler drift**: per (arm, setting) the target detection and its paired change from the same
  arm under the suite's sampler; a concept "comes back" under a setting when that change is an
  increase whose adjusted p < 0.05 and whose interval lies above zero;
* **sequential erasure**: after each erasure of a sequence, every concept's target detection;
  a **rebound** is an earlier concept's detection rising significantly after later erasures.
"""

from __future__ import annotations

import math

from bench import metrics as bm
from bench.core import stats
from bench.rundir import resurgence_rows as study_rows
from reports.metrics import Estimate, _estimate
from reports.rundata import ORIGINAL
from reports.tables import Section  # kind: finetune | relearn | drift | sequential

ALPHA = 0.05


class _Index:
    def __init__(self, aggregates):
        self.rows = {}
        for rec in aggregates[aggregates["metric"] == "detected"].to_dict("records"):
            self.rows[(rec["scope"], str(rec["model"]), str(rec["method"]), str(rec["variant"]),
                       str(rec["concept"]), str(rec["prompt_set"]))] = rec

    def get(self, model, method, variant, concept, prompt_set="target", scope=bm.CONCEPT_SCOPE) -> Estimate:
        return _estimate(self.rows.get((scope, model, method, variant, concept, prompt_set)))


def _contrast(results, model, a, b, concept, prompt_set="target") -> dict:
    """Arm ``b`` minus arm ``a`` ((method, variant) each) on one concept's prompts, paired."""
    sel = results if concept is None else results[results["concept"].astype(str) == concept]
    return bm.contrast(sel, (model, *a), (model, *b), prompt_set)


def _adjust(contrasts: list[dict]) -> None:
    ps = [c["p"] for c in contrasts]
    for c, q in zip(contrasts, stats.benjamini_hochberg(ps) if ps else []):
        c["p_adj"] = q


def _increase(c: dict) -> bool:
    return c.get("p_adj", math.nan) < ALPHA and c["delta_lo"] > 0


def _back_step(steps, estimates) -> tuple[str, int | None]:
    """("not erased" | "back" | "not back", step)."""
    first = estimates[0]
    if first.missing or math.isnan(first.delta_hi) or first.delta_hi >= 0:
        return "not erased", None
    for step, est in zip(steps[1:], estimates[1:]):
        if not math.isnan(est.delta_hi) and est.delta_hi >= 0:
            return "back", step
    return "not back", None


def _rows_of(run, kind: str):
    rows = study_rows(run.results)
    return rows[rows["resurgence"] == kind]


def _main_variant(variant: str, marker: str) -> str:
    return variant.split(f" | {marker}")[0] if f" | {marker}" in variant else ""


def finetune_section(run, kind: str, index: _Index) -> Section | None:
    from reports.tables import Cell, Column, Table

    df, rows = run.results, _rows_of(run, kind)
    if rows.empty:
        return None
    chains = list(dict.fromkeys(rows["chain"].astype(str)))
    arms = list(dict.fromkeys(rows["base_arm"].astype(str)))
    arms.sort(key=lambda a: a != ORIGINAL)
    concepts = list(dict.fromkeys(rows["concept"].astype(str)))
    steps = sorted({int(s) for s in rows["step"].dropna()})
    last = steps[-1]
    model = str(rows["model"].iloc[0])
    variant_of = {}
    for r in rows[["base_arm", "chain", "step", "method", "variant"]].drop_duplicates().itertuples():
        variant_of[(r.base_arm, r.chain, int(r.step))] = (str(r.method), str(r.variant))
    entries, contrasts, curves = [], [], {}
    for chain in chains:
        for arm in arms:
            for concept in concepts:
                keys = [variant_of.get((arm, chain, s)) for s in steps]
                if None in keys:
                    continue
                ests = [index.get(model, m, v, concept) for m, v in keys]
                unrel = index.get(model, *keys[-1], concept, "unrelated")
                control = variant_of.get((ORIGINAL, chain, last))
                c_steps = _contrast(df, model, keys[0], keys[-1], concept)
                c_steps["what"] = "change"
                contrasts.append(c_steps)
                c_ctrl = None
                if arm != ORIGINAL and control is not None:
                    c_ctrl = _contrast(df, model, control, keys[-1], concept)
                    c_ctrl["what"] = "minus control"
                    contrasts.append(c_ctrl)
                status, step = _back_step(steps, ests) if arm != ORIGINAL else ("control", None)
                orig = index.get(model, ORIGINAL, "", concept)
                gap = orig.value - ests[0].value
                resurgence = (ests[-1].value - ests[0].value) / gap \
                    if status != "not erased" and arm != ORIGINAL and gap > 0 else math.nan
                entries.append({"chain": chain, "arm": arm, "concept": concept, "ests": ests,
                                "unrel": unrel, "c_steps": c_steps, "c_ctrl": c_ctrl, "status": status,
                                "step": step, "R": resurgence, "original": orig})
                curves[(chain, arm, concept)] = ests
    _adjust(contrasts)
    columns = [Column("chain", "Fine-tuning"), Column("arm", "Arm"), Column("concept", "Concept"),
               Column("d0", "Detection at 0", "pct"), Column("dN", f"At {last}", "pct"),
               Column("change", f"Change 0\u2192{last}", "signed_pct"), Column("p_change", "Adjusted p", "p"),
               Column("ctrl", "Minus control", "signed_pct"), Column("p_ctrl", "Adjusted p", "p"),
               Column("R", "Resurgence R", "float"), Column("back", "Back (step)"),
               Column("unrel", f"Unrelated change at {last}", "signed_pct")]
    table_rows = []
    for e in entries:
        ctrl = e["c_ctrl"] or {}
        back = {"back": f"at {e['step']}", "not back": f"not within {last}", "not erased": "not erased",
                "control": "\u2014"}[e["status"]]
        table_rows.append({
            "chain": Cell(e["chain"]), "arm": Cell(e["arm"]), "concept": Cell(e["concept"]),
            "d0": Cell.of(e["ests"][0]), "dN": Cell.of(e["ests"][-1]),
            "change": Cell(e["c_steps"]["delta"], e["c_steps"]["delta_lo"], e["c_steps"]["delta_hi"]),
            "p_change": Cell(e["c_steps"].get("p_adj", math.nan)),
            "ctrl": Cell(ctrl.get("delta", math.nan), ctrl.get("delta_lo", math.nan), ctrl.get("delta_hi", math.nan)),
            "p_ctrl": Cell(ctrl.get("p_adj", math.nan)), "R": Cell(e["R"]), "back": Cell(back),
            "unrel": Cell(e["unrel"].delta, e["unrel"].delta_lo, e["unrel"].delta_hi)})
    name = "relearning" if kind == "relearn" else "benign fine-tuning"
    table = Table(name=f"resurgence-{kind}", title=f"Resurgence: {name} ({model})",
                  caption=(f"Per fine-tuning chain, arm and concept: target detection at step 0 and step {last} "
                           "(95% bootstrap intervals), the paired change between them, and the difference from the "
                           "control (the original model fine-tuned on the same data with the same seed) at "
                           f"step {last}, exact McNemar p Benjamini-Hochberg adjusted over this table's tests; "
                           "R = (D_N - D_0)/(D_original - D_0); back = the first step whose paired change from "
                           "the original model has an interval reaching zero; the unrelated column is the "
                           "paired change from the original at the last step."),
                  columns=columns, rows=table_rows)
    return Section(kind, f"Resurgence: {name}", _finetune_answer(entries, last, name), table,
                   {"steps": steps, "chains": chains, "arms": arms, "concepts": concepts, "curves": curves,
                    "original": {c: index.get(model, ORIGINAL, "", c) for c in concepts}})


def _finetune_answer(entries, last: int, name: str) -> str:
    erased = [e for e in entries if e["status"] in ("back", "not back")]
    if not erased:
        return f"No arm erased a concept at step 0, so {name} has nothing to bring back."
    back = [e for e in erased if e["status"] == "back"]
    beyond = [e for e in erased if e["c_ctrl"] is not None and _increase(e["c_ctrl"])]
    parts = [f"{len(back)} of {len(erased)} erased (arm, concept, chain) cases come back within {last} steps"]
    if back:
        first = sorted(back, key=lambda e: e["step"])[:3]
        parts.append("first: " + "; ".join(f"{e['arm']} / {e['concept']} under {e['chain']} at step {e['step']}"
                                           for e in first))
    parts.append(f"{len(beyond)} end significantly above the control fine-tuned alike" if beyond else
                 "none ends significantly above the control fine-tuned alike")
    not_erased = len([e for e in entries if e["status"] == "not erased"])
    if not_erased:
        parts.append(f"{not_erased} cases were not erased at step 0")
    return "; ".join(parts) + "."


def drift_section(run, index: _Index) -> Section | None:
    from reports.tables import Cell, Column, Table

    df, rows = run.results, _rows_of(run, "drift")
    if rows.empty:
        return None
    settings = list(dict.fromkeys(rows["setting"].astype(str)))
    arms = list(dict.fromkeys(rows["base_arm"].astype(str)))
    arms.sort(key=lambda a: a != ORIGINAL)
    model = str(rows["model"].iloc[0])
    keys = {(r.base_arm, r.setting): (str(r.method), str(r.variant))
            for r in rows[["base_arm", "setting", "method", "variant"]].drop_duplicates().itertuples()}
    entries, contrasts, grid = [], [], {}
    for arm in arms:
        for setting in settings:
            key = keys.get((arm, setting))
            if key is None:
                continue
            default = (key[0], _main_variant(key[1], "drift "))
            est = index.get(model, *key, "", scope=bm.POOLED_SCOPE)
            base = index.get(model, *default, "", scope=bm.POOLED_SCOPE)
            c = _contrast(df, model, default, key, None)
            contrasts.append(c)
            control = keys.get((ORIGINAL, setting))
            c_ctrl = _contrast(df, model, control, key, None) if arm != ORIGINAL and control else None
            if c_ctrl is not None:
                contrasts.append(c_ctrl)
            entries.append({"arm": arm, "setting": setting, "est": est, "base": base, "c": c, "c_ctrl": c_ctrl})
            grid[(arm, setting)] = est
        grid[(arm, "suite sampler")] = index.get(model, keys[(arm, settings[0])][0],
                                                 _main_variant(keys[(arm, settings[0])][1], "drift "), "",
                                                 scope=bm.POOLED_SCOPE)
    _adjust(contrasts)
    columns = [Column("arm", "Arm"), Column("setting", "Sampler setting"),
               Column("det", "Detection, target", "pct"), Column("base", "Under the suite's sampler", "pct"),
               Column("change", "Change", "signed_pct"), Column("p", "Adjusted p", "p"),
               Column("ctrl", "Minus original (same setting)", "signed_pct"), Column("p_ctrl", "Adjusted p", "p"),
               Column("back", "Comes back")]
    table_rows = []
    for e in entries:
        ctrl = e["c_ctrl"] or {}
        table_rows.append({"arm": Cell(e["arm"]), "setting": Cell(e["setting"]), "det": Cell.of(e["est"]),
                           "base": Cell.of(e["base"]),
                           "change": Cell(e["c"]["delta"], e["c"]["delta_lo"], e["c"]["delta_hi"]),
                           "p": Cell(e["c"].get("p_adj", math.nan)),
                           "ctrl": Cell(ctrl.get("delta", math.nan), ctrl.get("delta_lo", math.nan),
                                        ctrl.get("delta_hi", math.nan)),
                           "p_ctrl": Cell(ctrl.get("p_adj", math.nan)),
                           "back": Cell("yes" if e["arm"] != ORIGINAL and _increase(e["c"]) else "")})
    table = Table(name="resurgence-drift", title=f"Resurgence: sampler drift ({model})",
                  caption=("Per arm and sampler setting, target detection pooled over the erased concepts (95% "
                           "hierarchical bootstrap intervals), its paired change from the same arm under the "
                           "suite's sampler (same prompts, samples and seeds) and its difference from the original "
                           "model drawn with the same setting; exact McNemar p, Benjamini-Hochberg adjusted over "
                           "this table's tests. Comes back: a significant increase whose interval is above zero."),
                  columns=columns, rows=table_rows)
    back = [e for e in entries if e["arm"] != ORIGINAL and _increase(e["c"])]
    answer = ("No sampler setting brings an erased concept back significantly." if not back else
              "Comes back under another sampler: " + "; ".join(
                  f"{e['arm']} under {e['setting']} ({100 * e['c']['delta']:+.0f} pt)" for e in back) + ".")
    return Section("drift", "Resurgence: sampler drift", answer, table,
                   {"arms": arms, "settings": ["suite sampler", *settings], "grid": grid})


def sequential_section(run, index: _Index) -> Section | None:
    from reports.tables import Cell, Column, Table

    df, rows = run.results, _rows_of(run, "sequential")
    if rows.empty:
        return None
    model = str(rows["model"].iloc[0])
    arms = list(dict.fromkeys(rows["base_arm"].astype(str)))
    order = list(dict.fromkeys(rows.sort_values("step")["chain"].astype(str)))[-1].split(" > ")
    keys = {(r.base_arm, int(r.step)): (str(r.method), str(r.variant), str(r.chain))
            for r in rows[["base_arm", "step", "method", "variant", "chain"]].drop_duplicates().itertuples()}
    columns = [Column("arm", "Arm"), Column("erased", "Erased so far")] + \
        [Column(f"c{i}", f"{c}, target", "pct") for i, c in enumerate(order)] + \
        [Column("unrel", "Unrelated change", "signed_pct")]
    table_rows, contrasts, rebounds = [], [], []
    for arm in arms:
        for t in range(1, len(order) + 1):
            key = keys.get((arm, t))
            if key is None:
                continue
            row = {"arm": Cell(arm), "erased": Cell(key[2])}
            for i, c in enumerate(order):
                row[f"c{i}"] = Cell.of(index.get(model, key[0], key[1], c))
            unrel = index.get(model, key[0], key[1], "", "unrelated", scope=bm.POOLED_SCOPE)
            row["unrel"] = Cell(unrel.delta, unrel.delta_lo, unrel.delta_hi)
            table_rows.append(row)
        last = keys.get((arm, len(order)))
        for i, c in enumerate(order[:-1]):
            at = keys.get((arm, i + 1))
            if at is None or last is None:
                continue
            ct = _contrast(df, model, at[:2], last[:2], c)
            ct.update(arm=arm, concept=c)
            contrasts.append(ct)
    _adjust(contrasts)
    rebounds = [c for c in contrasts if _increase(c)]
    table = Table(name="resurgence-sequential", title=f"Resurgence: sequential erasure ({model})",
                  caption=("After each erasure of the sequence (each on top of the one before), every concept's "
                           "target detection (95% bootstrap intervals) and the unrelated prompts' paired change "
                           "from the original model, pooled over the concepts judged. A rebound: a concept's "
                           "detection after the last erasure significantly above its detection right after its "
                           "own (exact McNemar, Benjamini-Hochberg over these tests)."),
                  columns=columns, rows=table_rows)
    answer = ("No rebound: no concept erased earlier is significantly more detectable after the later erasures."
              if not rebounds else "Rebound: " + "; ".join(
                  f"{c['arm']}'s {c['concept']} ({100 * c['delta']:+.0f} pt after the sequence)" for c in rebounds) + ".")
    return Section("sequential", "Resurgence: sequential erasure", answer, table, {"order": order})


def resurgence_studies(run) -> list[Section]:
    """Every resurgence section the run has, in the order fine-tuning, relearning, drift, sequence."""
    if study_rows(run.results).empty:
        return []
    index = _Index(run.aggregates)
    out = [finetune_section(run, "finetune", index), finetune_section(run, "relearn", index),
           drift_section(run, index), sequential_section(run, index)]
    return [s for s in out if s is not None]

