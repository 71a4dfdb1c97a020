"""The figures of the report's resurgence sections (reports/resurgence.py).

    from reports.resurgence_figures import resurgence_figures
    for name, title, fig, caption in resurgence_figures(section, "resurgence-01"):
        save(fig, out_dir / "figures", name)

Fine-tuning and relearning: detection against fine-tuning steps, one panel per (chain, concept),
a line per arm with its 95% band, the control dashed, the original model's detection dotted.
Drift: a heat map of target detection, arms x sampler settings.
"""

from __future__ import annotations

import math

from reports.figures import heatmap_figure, new_figure, style, text
from reports.rundata import ORIGINAL


def curves_figure(section):
    data = section.curves
    chains, concepts, arms, steps = data["chains"], data["concepts"], data["arms"], data["steps"]
    if not chains or len(steps) < 2:
        return None
    fig = new_figure(2.6 * len(concepts) + 1.6, 2.1 * len(chains) + 0.4)
    xs = list(range(len(steps)))  # the ladder is geometric: evenly spaced ticks read better
    axes = fig.subplots(len(chains), len(concepts), squeeze=False, sharex=True, sharey=True)
    for r, chain in enumerate(chains):
        for c, concept in enumerate(concepts):
            ax = axes[r][c]
            for i, arm in enumerate(arms):
                ests = data["curves"].get((chain, arm, concept))
                if ests is None:
                    continue
                ys = [100 * e.value for e in ests]
                if arm == ORIGINAL:
                    ax.plot(xs, ys, "--", color="#000000", lw=1.2, label="control (original, fine-tuned)")
                    continue
                st = style(i)
                ax.fill_between(xs, [100 * e.lo for e in ests], [100 * e.hi for e in ests],
                                color=st["color"], alpha=0.12, lw=0)
                ax.plot(xs, ys, marker=st["marker"], ms=3, color=st["color"], lw=1, label=text(arm))
            orig = data["original"].get(concept)
            if orig is not None and not orig.missing:
                ax.axhline(100 * orig.value, color="#777777", ls=":", lw=1, label="original, no fine-tuning")
            ax.set_ylim(-3, 103)
            ax.set_xticks(xs, [str(s) for s in steps], fontsize=7)
            if r == 0:
                ax.set_title(text(concept), fontsize=9)
            if c == 0:
                ax.set_ylabel(text(f"{chain}\ndetection (%)"), fontsize=8)
            if r == len(chains) - 1:
                ax.set_xlabel("fine-tuning steps", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", frameon=False, fontsize=7)
    return fig


def drift_figure(section):
    import numpy as np

    data = section.curves
    arms, settings, grid = data["arms"], data["settings"], data["grid"]
    values = np.full((len(arms), len(settings)), np.nan)
    for (arm, setting), est in grid.items():
        if not est.missing:
            values[arms.index(arm), settings.index(setting)] = 100 * est.value
    if np.isnan(values).all():
        return None
    return heatmap_figure(values, arms, settings, "target detection (%)")


def resurgence_figures(section, prefix: str) -> list[tuple]:
    """(name, title, figure, caption) of the section's figures."""
    if section.kind in ("finetune", "relearn"):
        specs = [("curves", f"{section.title}: detection against steps", curves_figure(section),
                  "Target detection per fine-tuning chain (rows) and concept (columns) against the steps, with "
                  "95% bootstrap bands; dashed: the control (the original model fine-tuned alike); dotted: the "
                  "original model before fine-tuning.")]
    elif section.kind == "drift":
        specs = [("drift", "Sampler drift: target detection", drift_figure(section),
                  "Target detection (%) pooled over the erased concepts per arm (rows) and sampler setting "
                  "(columns); the first column is the suite's own sampler.")]
    else:
        specs = []
    return [(f"{prefix}-{name}", title, fig, caption) for name, title, fig, caption in specs if fig is not None]
