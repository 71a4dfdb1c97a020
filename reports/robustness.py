"""The report's robustness sections: do attacks and probes bring an erased concept back?

    from reports.robustness import robustness_sections
    for section in robustness_sections(run):   # prompt and text attacks, embedding attacks, costs
        print(section.title, section.answer)

Read from the rows a suite's ``robustness:`` section planned (bench/core/schema.py
``ROBUSTNESS_COLUMNS``) and the run's robustness.json by bench/robustness.py: per (arm, concept,
probe) the attack success before (plain target prompts) and after, the paired or unpaired lift
with its interval and Benjamini-Hochberg-adjusted p, the same probe on the original model (the
control) and the arm's distance from it. Continuous-embedding attacks have a section of their
own: no text carries them, so they bound what any text attack can do; so do non-text probes (a
masked image to fill in). A probe that cannot apply
is listed with its reason. The heat map and example images are reports/robustness_figures.py.
"""

from __future__ import annotations

import json
import math

from bench.robustness import ALL, attack_costs, robustness_table
from reports.tables import Cell, Column, Section, Table

ROBUSTNESS_FILE = "robustness.json"


def _record(run) -> dict:
    path = run.path / ROBUSTNESS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _success_table(name: str, title: str, frame, caption: str) -> Table:
    columns = [Column("probe", "Probe"), Column("arm", "Arm"), Column("concept", "Concept"),
               Column("n", "n", "count"), Column("pre", "Before", "pct"),
               Column("post", "After (probe)", "pct"), Column("lift", "Lift", "signed_pct"),
               Column("p", "Adjusted p", "p"), Column("union", "Plain or attacked", "pct"),
               Column("ctrl", "Original, probe", "pct"), Column("vs", "Minus original", "signed_pct"),
               Column("verdict", "Verdict")]
    rows = []
    for r in frame.to_dict("records"):
        if r.get("verdict") == "not applicable":
            row = {c.key: Cell(math.nan) for c in columns}
            row.update({"probe": Cell(r["probe"]), "arm": Cell(r["arm"]), "concept": Cell(r["concept"]),
                        "verdict": Cell(f"not applicable: {r['reason']}")})
            rows.append(row)
            continue
        rows.append({"probe": Cell(r["probe"]), "arm": Cell(r["arm"]), "concept": Cell(r["concept"]),
                     "n": Cell(r["n"]), "pre": Cell(r["pre"], r["pre_lo"], r["pre_hi"]),
                     "post": Cell(r["post"], r["post_lo"], r["post_hi"]),
                     "lift": Cell(r["lift"], r["lift_lo"], r["lift_hi"]), "p": Cell(r["lift_p_adj"]),
                     "union": Cell(r.get("union", math.nan)), "ctrl": Cell(r.get("control_post", math.nan)),
                     "vs": Cell(r.get("vs_control", math.nan), r.get("vs_control_lo", math.nan),
                                r.get("vs_control_hi", math.nan)),
                     "verdict": Cell(r["verdict"])})
    return Table(name=name, title=title, caption=caption, columns=columns, rows=rows, group="probe")


CAPTION = ("Attack success = the concept's detection rate (its catalog detector) on a probe's images, per arm "
           "and concept and pooled (all: clusters are (concept, erasure seed)); 95% hierarchical bootstrap "
           "intervals. Before: the arm's plain target prompts; for a best-of-N probe (noise), its control "
           "probe on the same arm (best-of-n: the best of as many plain draws, the same seeds and selector), so "
           "its lift is what it adds beyond keeping the best of N. Lift: after minus before, paired image by image "
           "for an optimised attack (its images have the seeds of its base prompt's plain images; exact "
           "McNemar), unpaired for a prompt probe (Fisher exact); Benjamini-Hochberg adjusted over every lift "
           "of the study. Plain or attacked: the authors' Post-ASR (a pair counts when either image shows the "
           "concept). Original, probe: the same probe on the original model (the control); minus original: "
           "the arm's paired distance from it. Comes back: adjusted p < 0.05 with the interval above zero.")


def _answer(frame, what: str) -> str:
    pooled = frame[(frame["concept"] == ALL) & (frame["verdict"] == "comes back")]
    if frame.empty or frame["verdict"].eq("not applicable").all():
        return f"No {what} applied to any arm."
    if pooled.empty:
        per = frame[frame["verdict"] == "comes back"]
        if per.empty:
            return f"No {what} brings an erased concept back significantly (pooled or per concept)."
        return ("Pooled over concepts nothing comes back; per concept: " +
                "; ".join(f"{r.arm} on {r.concept} under {r.probe} ({100 * r.pre:.0f}% -> {100 * r.post:.0f}%)"
                          for r in per.itertuples()) + ".")
    return ("Comes back (pooled over concepts): " +
            "; ".join(f"{r.arm} under {r.probe} ({100 * r.pre:.0f}% -> {100 * r.post:.0f}%, "
                      f"{100 * r.lift:+.0f} pt [{100 * r.lift_lo:+.0f}, {100 * r.lift_hi:+.0f}])"
                      for r in pooled.itertuples()) + ".")


def robustness_sections(run) -> list[Section]:
    """The run's robustness sections (none when its suite has no ``robustness:`` section)."""
    from bench.rundir import robustness_rows
    if robustness_rows(run.results).empty:
        return []
    record = _record(run)
    table = robustness_table(run.results, record)
    kinds = table["kind"].fillna("")
    sections = []
    for name, title, frame, what in (
            ("robustness-text", "Robustness: prompt probes and text attacks",
             table[kinds.isin(["prompt", "text"])], "prompt probe or text attack"),
            ("robustness-embedding", "Robustness: continuous-embedding attacks", table[kinds == "embedding"],
             "embedding attack"),
            ("robustness-image", "Robustness: non-text probes", table[kinds == "image"], "non-text probe")):
        if frame.empty:
            continue
        t = _success_table(name, title, frame, CAPTION)
        sections.append(Section(name.split("-", 1)[1], title, _answer(frame, what), t,
                                {"table": frame, "run": run}))
    costs = attack_costs(record)
    if not costs.empty:
        columns = [Column("probe", "Attack"), Column("arm", "Arm"), Column("jobs", "Jobs", "count"),
                   Column("steps", "Steps", "count"), Column("seconds", "Seconds (median)", "seconds"),
                   Column("before", "Objective before", "float"), Column("after", "Objective after", "float")]
        rows = [{"probe": Cell(r["probe"]), "arm": Cell(r["arm"]), "jobs": Cell(r["jobs"]),
                 "steps": Cell(r["steps"]), "seconds": Cell(r["seconds_median"]),
                 "before": Cell(r["objective_before"]), "after": Cell(r["objective_after"])}
                for r in costs.to_dict("records")]
        scored = costs[costs["objective_before"].notna() & costs["objective_after"].notna()]
        lowered = (scored["objective_after"] < scored["objective_before"]).mean() if len(scored) else math.nan
        t = Table(name="robustness-cost", title="Robustness: cost of each attack",
                  caption=("Per optimised attack and arm: jobs (one per base prompt and erasure seed), the "
                           "budget's steps, median wall seconds per job, and the attack's own objective (the "
                           "edited model's denoising loss on the concept's images, a fixed batch; for P4D its "
                           "distance from the original model's prediction) before and after, medians. Found prompts and vectors: attacks/<job>/ in the run folder."),
                  columns=columns, rows=rows, group="probe")
        sections.append(Section("cost", "Robustness: cost of each attack",
                                f"The attacks lowered their own objective in {100 * lowered:.0f}% of (attack, arm) "
                                f"cells; median {costs['seconds_median'].median():.1f} s per job.", t))
    return sections

