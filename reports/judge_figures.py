"""The figure of the report's threshold section (reports/judges.py): detection against threshold.

    from reports.judge_figures import judge_figures
    for name, title, fig, caption in judge_figures(section, "judges-01"):
        save(fig, out_dir / "figures", name)

One panel per (judge role, erased concept): the target detection rate of each method (and of the
original model, black) as the judge's threshold moves, the operating point as a dashed line and
the plausible range (bench.judging.plausible_range) shaded.
"""

from __future__ import annotations

import math

from reports.figures import new_figure, style, text
from reports.rundata import ORIGINAL

ROLE_NAMES = {"detector": "detector", "judge": "second judge"}


def threshold_figure(section):
    from bench.judging import plausible_range

    curves = section.curves
    panels = []
    for role, frame in curves.items():
        target = frame[frame["prompt_set"] == "target"]
        for concept in dict.fromkeys(target["concept"]):
            panels.append((role, concept, target[target["concept"] == concept]))
    if not panels:
        return None
    concepts = list(dict.fromkeys(p[1] for p in panels))
    roles = list(dict.fromkeys(p[0] for p in panels))
    fig = new_figure(2.5 * len(concepts) + 1.8, 2.1 * len(roles) + 0.4)
    axes = fig.subplots(len(roles), len(concepts), squeeze=False, sharex=True, sharey=True)
    # a variant is its own line: its own colour and marker (SAFREE's two variants are two arms)
    methods = list(dict.fromkeys((m, v) for _, _, g in panels for m, v in zip(g["method"], g["variant"])
                                 if m != ORIGINAL))
    for role, concept, g in panels:
        ax = axes[roles.index(role)][concepts.index(concept)]
        for (method, variant), line in g.groupby(["method", "variant"], sort=False):
            line = line.sort_values("threshold")
            xs, ys = line["threshold"].to_numpy(), 100 * line["rate"].to_numpy()
            if method == ORIGINAL:
                ax.plot(xs, ys, color="#000000", lw=1.4, label="original")
                continue
            st = style(1 + methods.index((method, variant)))
            label = method if not variant else f"{method} ({variant})"
            ax.plot(xs, ys, marker=st["marker"], ms=2.5, color=st["color"], lw=1, label=text(label))
        operating = g["operating"].dropna()
        if len(operating) and not math.isnan(float(operating.iloc[0])):
            t = float(operating.iloc[0])
            lo, hi = plausible_range(t)
            ax.axvspan(lo, hi, color="#cccccc", alpha=0.35, lw=0)
            ax.axvline(t, color="#555555", ls="--", lw=1)
        ax.set_ylim(-3, 103)
        ax.set_xlim(0, 1)
        judge = next((j for j in g["judge"] if isinstance(j, str)), "")
        ax.set_title(text(f"{concept}\n{ROLE_NAMES.get(role, role)}: {judge}"), fontsize=8)
        if concepts.index(concept) == 0:
            ax.set_ylabel("target detection (%)", fontsize=8)
        if roles.index(role) == len(roles) - 1:
            ax.set_xlabel("threshold on the judge's confidence", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for row in axes:
        for ax in row:
            for h, l in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(l, h)
    # about 8 entries fit beside each row of panels and 8 more in the margins: the rest take columns
    per_column = 8 * (len(roles) + 1)
    fig.legend(list(seen.values()), list(seen.keys()), loc="outside right center", frameon=False, fontsize=7,
               ncols=math.ceil(len(seen) / per_column))
    return fig


def judge_figures(section, prefix: str) -> list[tuple]:
    """(name, title, figure, caption) of the section's figures."""
    if section.kind != "threshold":
        return []
    fig = threshold_figure(section)
    if fig is None:
        return []
    return [(f"{prefix}-thresholds", "Target detection against the judge's threshold", fig,
             "Per erased concept (columns) and judge (rows): the share of target-prompt images whose judge's "
             "confidence in the concept reaches the threshold (x), per method, the original model in black; "
             "dashed: the operating threshold; shaded: the plausible range (0.4x to 2x the operating point).")]
