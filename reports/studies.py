"""The report's studies: ablations over a method's parameter subsets and sweeps over its
hyperparameters, each read off one section (a table, its figures and a one-sentence answer).

    from reports.studies import find_studies, study_table, answer
    for study in find_studies(run, summary):        # from the manifest's arms (bench/runner/run.py)
        table = study_table(study)
        print(answer(study))

A study is every arm of a run that names the same ``study`` (a suite's ``sweep:`` entry makes
one by itself; docs/contributing.md, "Sweeps and studies"). Its numbers are pooled over the
erased concepts: each arm's target and unrelated detection, and their paired changes from the
original model's same-seed twins, are the aggregates' pooled rows (bench/metrics.py); arm-vs-arm
differences come from the same engine (``bench.metrics.contrast``). The study's own family of
tests (every arm's two changes, and the answer's contrasts) is Benjamini-Hochberg adjusted
together, so a study of twenty arms controls its own false alarms.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from bench import metrics as bm
from bench.core import stats
from reports.metrics import Estimate
from reports.rundata import ORIGINAL

LAYER_ARM = re.compile(r"^te-layer(\d+)-(mlp|attn)$")
# The answer's pairs of arms: (a, b, what a is, what b is), the first pair a study holds.
ANSWER_PAIRS = (("te-mlp", "te-attn", "MLPs alone", "attention alone"),
                ("xattn", "non-xattn", "cross-attention alone", "everything but cross-attention"))


@dataclass
class Arm:
    key: tuple                 # (model, method, variant): the summary's method key
    label: str
    variant: str | None
    swept: dict
    target: Estimate
    unrelated: Estimate
    seconds: float = math.nan
    params_changed: float = math.nan
    change: dict = field(default_factory=dict)   # (component, block, kind) -> mean relative change
    transfer_from: str | None = None             # the model the edit was made on (a transfer arm)
    p_adj: dict = field(default_factory=dict)    # prompt set -> adjusted p (the study's family)
    verdicts: dict = field(default_factory=dict)  # prompt set -> bench.metrics.verdict


@dataclass
class Study:
    name: str
    model: str
    method: str                # the study's method(s), comma-joined
    keys: tuple                # the swept keys ("variant" for an ablation over subsets)
    arms: list                 # of Arm, in the suite's order
    original: dict             # prompt set -> Estimate of the original model
    contrasts: list = field(default_factory=list)  # dicts: a, b, what, prompt_set, delta..., p_adj

    @property
    def is_curve(self) -> bool:
        """One numeric swept key: a trade-off curve against it."""
        return len(self.keys) == 1 and self.keys[0] != "variant" and all(
            isinstance(a.swept.get(self.keys[0]), (int, float)) for a in self.arms)

    @property
    def layer_arms(self) -> list:
        return [a for a in self.arms if a.variant and LAYER_ARM.match(a.variant)]


def find_studies(run, summary) -> list[Study]:
    """The run's studies of two arms or more (none for a run whose manifest lists no arms). A
    study may span methods (the UNet ablation: ESD, GA, CA and FMN arms in one study)."""
    arms = run.manifest.effective.get("arms") or []
    models = sorted({k[0] for k in summary.methods})
    grouped: dict[str, list[dict]] = {}
    for a in arms:
        if a.get("study"):
            grouped.setdefault(a["study"], []).append(a)
    out = []
    for name, members in grouped.items():
        if len(members) < 2:
            continue
        for model in models:
            study = _study(run, summary, name, model, members)
            if study is not None:
                out.append(study)
    return out


def _study(run, summary, name, model, members) -> Study | None:
    keys = tuple(dict.fromkeys(k for a in members for k, _ in a.get("swept") or []))
    methods = list(dict.fromkeys(a["method"] for a in members))
    arms = []
    for a in members:
        key = (model, a["method"], a["label"])
        if key not in summary.pooled:
            continue
        pooled = summary.pooled[key]
        rows = [r for r in summary.rows if (r["model"], r["method"], r["variant"]) == key]
        label = a["label"] if len(methods) == 1 else summary.labels[key]
        arms.append(Arm(key=key, label=label, variant=a.get("variant"),
                        swept={k: v for k, v in a.get("swept") or []},
                        target=pooled["det_target"], unrelated=pooled["det_unrelated"],
                        seconds=_mean(r["seconds"].value for r in rows),
                        params_changed=_mean(r["params_changed"].value for r in rows),
                        change=_change(run, key), transfer_from=a.get("transfer_from")))
    if len(arms) < 2:
        return None
    original = summary.pooled.get((model, ORIGINAL, ""), {})
    study = Study(name=name, model=model, method=", ".join(methods), keys=keys, arms=arms,
                  original={"target": original.get("det_target"), "unrelated": original.get("det_unrelated")})
    _contrasts(run, study)
    _adjust(study)
    return study


def _mean(values) -> float:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else math.nan


def _change(run, key) -> dict:
    """Mean relative weight change per (component, block, kind) over the arm's edits."""
    df = run.results
    sel = df[(df["model"].astype(str) == key[0]) & (df["method"].astype(str) == key[1])
             & (df["variant"].astype(str) == key[2])]
    edits = run.edits()
    sums: dict[tuple, list[float]] = {}
    ids = sorted(set(sel["edit_id"].dropna().astype(str))) if "edit_id" in sel else []
    records = [edits[e] for e in ids if e in edits]
    for rec in records:
        for row in rec.change_by_group or []:
            g = (row["component"], row["block"], row["kind"])
            sums.setdefault(g, []).append(float(row["relative_change"]))
    # an edit that left a group untouched changed it by zero
    return {g: sum(v) / len(records) for g, v in sorted(sums.items())} if records else {}


def _transfer_pair(study: Study):
    """A transfer arm and the same method erasing this model directly, as an answer pair."""
    for a in study.arms:
        direct = [b for b in study.arms if b.transfer_from is None and b.key[1] == a.key[1]
                  and b.variant == a.variant]
        if a.transfer_from and direct:
            return (a, direct[0], f"the text encoder erased on {a.transfer_from}",
                    f"erasing {study.model} itself")
    return None


def _pair(study: Study):
    """The first of ANSWER_PAIRS both of whose arms one method holds: (arm a, arm b, what a is,
    what b is), or None."""
    by_variant = {(a.key[1], a.variant): a for a in study.arms}
    for va, vb, what_a, what_b in ANSWER_PAIRS:
        for method in dict.fromkeys(a.key[1] for a in study.arms):
            if (method, va) in by_variant and (method, vb) in by_variant:
                return by_variant[(method, va)], by_variant[(method, vb)], what_a, what_b
    return None


def _ends(study: Study):
    """A numeric sweep's first and last arm by the swept value, as an answer pair."""
    key = study.keys[0]
    arms = sorted(study.arms, key=lambda a: a.swept[key])
    return arms[-1], arms[0], f"{key}={arms[-1].swept[key]}", f"{key}={arms[0].swept[key]}"


def _contrasts(run, study: Study) -> None:
    pair = _transfer_pair(study) or (_ends(study) if study.is_curve else _pair(study))
    if pair is None:
        return
    a, b, what_a, what_b = pair
    for prompt_set in ("target", "unrelated"):
        c = bm.contrast(run.results, b.key, a.key, prompt_set)
        study.contrasts.append({"a": a, "b": b, "what_a": what_a, "what_b": what_b,
                                "prompt_set": prompt_set, **c})


def _adjust(study: Study) -> None:
    """Benjamini-Hochberg over the study's family: each arm's two changes and the contrasts."""
    slots, ps = [], []
    for arm in study.arms:
        for prompt_set, est in (("target", arm.target), ("unrelated", arm.unrelated)):
            slots.append((arm, prompt_set, est))
            ps.append(est.p)
    for c in study.contrasts:
        slots.append((None, c["prompt_set"], c))
        ps.append(c["p"])
    finite = [i for i, p in enumerate(ps) if p is not None and not math.isnan(p)]
    adjusted = stats.benjamini_hochberg([ps[i] for i in finite]) if finite else []
    for i, padj in zip(finite, adjusted):
        arm, prompt_set, item = slots[i]
        better = "lower" if prompt_set == "target" else "higher"
        if arm is None:
            item["p_adj"] = padj
            item["verdict"] = bm.verdict(item["delta"], item["delta_lo"], item["delta_hi"], padj, None)
        else:
            arm.p_adj[prompt_set] = padj
            arm.verdicts[prompt_set] = bm.verdict(item.delta, item.delta_lo, item.delta_hi, padj, better)


def pareto_front(arms: list) -> list:
    """The arms no other arm beats on both axes (lower target detection, higher unrelated)."""
    ok = [a for a in arms if not a.target.missing and not a.unrelated.missing]
    front = []
    for a in ok:
        dominated = any((b.target.value <= a.target.value and b.unrelated.value >= a.unrelated.value)
                        and (b.target.value < a.target.value or b.unrelated.value > a.unrelated.value)
                        for b in ok)
        if not dominated:
            front.append(a)
    return sorted(front, key=lambda a: a.target.value)


def layer_grid(study: Study) -> tuple[list[int], dict]:
    """(layers, {(layer, "mlp"|"attn"): Arm}) of the study's per-layer arms."""
    cells = {}
    for a in study.layer_arms:
        m = LAYER_ARM.match(a.variant)
        cells[(int(m.group(1)), m.group(2))] = a
    return sorted({l for l, _ in cells}), cells


def _pt(x: float) -> str:
    return "\u2014" if x is None or math.isnan(x) else f"{round(100 * x) + 0:+d} pt"


def _interval(lo: float, hi: float) -> str:
    return "" if math.isnan(lo) or math.isnan(hi) else f" [{round(100 * lo) + 0:+d}, {round(100 * hi) + 0:+d}]"


def answer(study: Study) -> str:
    """The study's answer in one sentence, with its evidence (pooled, paired, adjusted)."""
    def arm_text(a: Arm) -> str:
        return (f"{a.label} changes target detection by {_pt(a.target.delta)}"
                f"{_interval(a.target.delta_lo, a.target.delta_hi)} at unrelated {_pt(a.unrelated.delta)}"
                f"{_interval(a.unrelated.delta_lo, a.unrelated.delta_hi)}")

    target = [c for c in study.contrasts if c["prompt_set"] == "target"]
    front = pareto_front(study.arms)
    front_text = ("; the Pareto front (least target, most unrelated detection) is "
                  + ", ".join(a.label for a in front)) if front else ""
    front_text += _layers_text(study)
    if target:
        c = target[0]
        a, b = c["a"], c["b"]
        diff = (f"{c['what_a']} minus {c['what_b']}, paired: {_pt(c['delta'])}"
                f"{_interval(c['delta_lo'], c['delta_hi'])} (adjusted p {_p_text(c.get('p_adj'))})")
        significant = c.get("verdict") in ("lower", "higher")
        robust = significant and (c["delta_hi"] < 0 if c["delta"] < 0 else c["delta_lo"] > 0)
        more = c["what_a"] if c["delta"] < 0 else c["what_b"]
        cannot = f"the mini world cannot tell {c['what_a']} from {c['what_b']} in erasure at this budget"
        singular = study.is_curve or a.transfer_from is not None  # "k=16 erases", "the encoder erases"
        if singular:
            other = c["what_b"] if more == c["what_a"] else c["what_a"]
            lead = more if "=" in more.split()[0] else more[0].upper() + more[1:]  # "k=16" stays
            verdict = f"{lead} erases more than {other}" if robust else \
                (f"In these edits {more} erased more, but not reliably across erasure seeds (the interval "
                 f"reaches zero): {cannot}" if significant else cannot[0].upper() + cannot[1:])
        elif robust:
            verdict = f"{more[0].upper() + more[1:]} erase more"
        elif significant:
            verdict = (f"In these edits {more} erased more, but not reliably across erasure seeds (the "
                       f"interval reaches zero): {cannot}")
        else:
            verdict = cannot[0].upper() + cannot[1:]
        return (f"{verdict}: {c['what_a']} ({arm_text(a)}), {c['what_b']} ({arm_text(b)}); "
                f"{diff}{_preservation_text(study)}{front_text}.")
    best = min((a for a in study.arms if not a.target.missing), key=lambda a: a.target.value, default=None)
    if best is None:
        return f"{study.name}: no arm has target detections."
    return f"{study.name}: the strongest erasure is {arm_text(best)}{front_text}."


def _preservation_text(study: Study) -> str:
    """The answer pair's paired difference on unrelated prompts, when it is robust."""
    u = next((c for c in study.contrasts if c["prompt_set"] == "unrelated"), None)
    if u is None or u.get("verdict") not in ("lower", "higher") or \
            not (u["delta_hi"] < 0 if u["delta"] < 0 else u["delta_lo"] > 0):
        return ""
    keeps = u["what_a"] if u["delta"] > 0 else u["what_b"]
    return (f"; {keeps} keeps unrelated prompts better ({u['what_a']} minus {u['what_b']}: "
            f"{_pt(u['delta'])}{_interval(u['delta_lo'], u['delta_hi'])}, adjusted p {_p_text(u.get('p_adj'))})")


def _layers_text(study: Study) -> str:
    """What the single-layer arms did, in a clause (empty without them)."""
    layer = study.layer_arms
    if not layer:
        return ""
    erased = [a.label for a in layer if a.verdicts.get("target") in (bm.BETTER, bm.BETTER_SEED_DEPENDENT)]
    changes = [a.target.delta for a in layer if not math.isnan(a.target.delta)]
    span = f" (target changes {_pt(min(changes))} to {_pt(max(changes))})" if changes else ""
    if not erased:
        return f"; no single layer's MLP or attention erases alone{span}"
    return f"; of {len(layer)} single-layer arms, {', '.join(erased)} erase{'s' if len(erased) == 1 else ''}{span}"


def _p_text(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "\u2014"
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def study_table(study: Study, index: int):
    """One row per arm: pooled detections with intervals, their changes, verdicts, cost."""
    from reports.tables import Cell, Column, Table, erasure_word
    keys = [k for k in study.keys if k != "variant"]
    columns = [Column("arm", "Arm")] + [Column(f"swept_{k}", k) for k in keys] + [
        Column("det_target", "Detection, target", "pct", "lower"),
        Column("change_target", "Change, target", "signed_pct", "lower"),
        Column("p_target", "Adjusted p", "p"), Column("verdict_target", "Target verdict"),
        Column("det_unrelated", "Detection, unrelated", "pct", "higher"),
        Column("change_unrelated", "Change, unrelated", "signed_pct", "higher"),
        Column("p_unrelated", "Adjusted p", "p"),
        Column("params_changed", bm.METRIC_BY_NAME["params_changed"].label, "count"),
        Column("seconds", bm.METRIC_BY_NAME["seconds"].label, "seconds"),
        Column("pareto", "On the Pareto front")]
    front = {a.label for a in pareto_front(study.arms)}
    rows = []
    orig_t, orig_u = study.original.get("target"), study.original.get("unrelated")
    if orig_t is not None and orig_u is not None:
        rows.append({"arm": Cell("original"), **{f"swept_{k}": Cell("") for k in keys},
                     "det_target": Cell.of(orig_t), "change_target": Cell(math.nan), "p_target": Cell(math.nan),
                     "verdict_target": Cell(""), "det_unrelated": Cell.of(orig_u),
                     "change_unrelated": Cell(math.nan), "p_unrelated": Cell(math.nan),
                     "params_changed": Cell(math.nan), "seconds": Cell(math.nan), "pareto": Cell("")})
    for a in study.arms:
        rows.append({"arm": Cell(a.label), **{f"swept_{k}": Cell(str(a.swept.get(k, ""))) for k in keys},
                     "det_target": Cell.of(a.target),
                     "change_target": Cell(a.target.delta, a.target.delta_lo, a.target.delta_hi),
                     "p_target": Cell(a.p_adj.get("target", math.nan)),
                     "verdict_target": Cell(erasure_word(a.verdicts.get("target", ""), a.target.delta)),
                     "det_unrelated": Cell.of(a.unrelated),
                     "change_unrelated": Cell(a.unrelated.delta, a.unrelated.delta_lo, a.unrelated.delta_hi),
                     "p_unrelated": Cell(a.p_adj.get("unrelated", math.nan)),
                     "params_changed": Cell(a.params_changed), "seconds": Cell(a.seconds),
                     "pareto": Cell("yes" if a.label in front else "")})
    return Table(name=f"study-{index:02d}", title=f"Study: {study.name} ({study.model})",
                 caption=("One row per arm, pooled over the erased concepts: detection on target prompts (lower = "
                          "erased) and unrelated prompts (higher = preserved), each with its paired change from "
                          "the original model's same-seed twins (95% hierarchical bootstrap intervals: concept x "
                          "erasure seed, then images) and exact McNemar p, Benjamini-Hochberg adjusted over this "
                          "study's tests; parameters changed and seconds are means over the arm's edits; the "
                          "Pareto front holds the arms no other arm beats on both detections."),
                 columns=columns, rows=rows)


