"""The figures of a study section (reports/studies.py): the Pareto scatter, the layer x {mlp,
attention} heat maps, the trade-off curve of a sweep and where each arm's change went.

    from reports.study_figures import study_figures
    for name, title, fig, caption in study_figures(study, "study-01"):
        save(fig, out_dir / "figures", name)

Every function returns a matplotlib Figure, or None when the study has nothing of that kind to
draw (no per-layer arms: no heat map; no numeric sweep: no curve; no change records: no map).
"""

from __future__ import annotations

import math

from reports.figures import new_figure, style, text
from reports.studies import Study, layer_grid, pareto_front


def _pct_err(est) -> tuple[float, list]:
    return 100 * est.value, [[100 * max(est.value - est.lo, 0)], [100 * max(est.hi - est.value, 0)]]


def pareto_figure(study: Study):
    """Target (x) against unrelated (y) detection per arm, with 95% intervals and the front."""
    fig = new_figure(6.0, 4.6)
    ax = fig.add_subplot()
    arms = [a for a in study.arms if not a.target.missing and not a.unrelated.missing]
    if not arms:
        return None
    orig_t, orig_u = study.original.get("target"), study.original.get("unrelated")
    if orig_t is not None and orig_u is not None and not orig_t.missing:
        ax.plot(100 * orig_t.value, 100 * orig_u.value, "o", ms=13, mfc="none", mew=1.5, color="#000000",
                label="original", zorder=5)
    for i, a in enumerate(arms):
        st = style(i + 1)
        x, xerr = _pct_err(a.target)
        y, yerr = _pct_err(a.unrelated)
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=st["marker"], color=st["color"], capsize=2, lw=0.8,
                    ms=6, label=text(a.label))
    front = pareto_front(arms)
    if len(front) > 1:
        ax.plot([100 * a.target.value for a in front], [100 * a.unrelated.value for a in front], "--",
                color="#777777", lw=1, zorder=1, label="Pareto front")
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("Detection on target prompts (%)  \u2190 erased")
    ax.set_ylabel("Detection on unrelated prompts (%)  \u2192 preserved")
    ax.set_title(text(f"{study.name}: erasure vs preservation"))
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=7)
    return fig


def layer_heatmap_figure(study: Study):
    """Two panels, layer x {MLP, attention}: the change in target and in unrelated detection."""
    layers, cells = layer_grid(study)
    if not layers:
        return None
    import numpy as np
    kinds = ("mlp", "attn")
    fig = new_figure(6.4, 0.9 + 0.45 * len(layers))
    for panel, (prompt_set, title, cmap) in enumerate((("target", "Change in target detection (pt)", "Blues_r"),
                                                        ("unrelated", "Change in unrelated detection (pt)", "Reds_r"))):
        ax = fig.add_subplot(1, 2, panel + 1)
        grid = np.full((len(layers), len(kinds)), np.nan)
        for (layer, kind), arm in cells.items():
            est = arm.target if prompt_set == "target" else arm.unrelated
            grid[layers.index(layer), kinds.index(kind)] = 100 * est.delta
        ax.imshow(grid, cmap=cmap, vmin=-100, vmax=0, aspect="auto")
        for r in range(len(layers)):
            for c in range(len(kinds)):
                arm = cells.get((layers[r], kinds[c]))
                if arm is None:
                    continue
                est = arm.target if prompt_set == "target" else arm.unrelated
                word = "" if math.isnan(est.delta_lo) else f"\n[{100 * est.delta_lo:+.0f}, {100 * est.delta_hi:+.0f}]"
                ax.text(c, r, f"{100 * est.delta:+.0f}{word}", ha="center", va="center", fontsize=7,
                        color="white" if grid[r, c] < -55 else "black")
        ax.set_xticks(range(len(kinds)), ["MLP", "attention"])
        ax.set_yticks(range(len(layers)), [f"layer {l}" for l in layers])
        ax.set_title(title, fontsize=9)
        ax.grid(False)
    return fig


def curve_figure(study: Study):
    """A numeric sweep: target and unrelated detection against the swept value, 95% bands."""
    if not study.is_curve:
        return None
    key = study.keys[0]
    arms = sorted((a for a in study.arms if not a.target.missing), key=lambda a: a.swept[key])
    if len(arms) < 2:
        return None
    xs = [a.swept[key] for a in arms]
    fig = new_figure(5.2, 3.8)
    ax = fig.add_subplot()
    for prompt_set, colour, marker in (("target", "#0072B2", "o"), ("unrelated", "#D55E00", "s")):
        ests = [a.target if prompt_set == "target" else a.unrelated for a in arms]
        ys = [100 * e.value for e in ests]
        ax.fill_between(xs, [100 * e.lo for e in ests], [100 * e.hi for e in ests], color=colour, alpha=0.15, lw=0)
        ax.plot(xs, ys, marker=marker, color=colour, label=f"{prompt_set} prompts")
        orig = study.original.get(prompt_set)
        if orig is not None and not orig.missing:
            ax.axhline(100 * orig.value, color=colour, ls=":", lw=1, label=f"original, {prompt_set}")
    if all(x > 0 for x in xs) and max(xs) / min(xs) >= 10:
        ax.set_xscale("log", base=2 if all(float(x).is_integer() for x in xs) else 10)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_ylim(-3, 103)
    ax.set_xlabel(text(key))
    ax.set_ylabel("Detection (%)")
    ax.set_title(text(f"{study.name}: trade-off"))
    ax.legend(loc="best", fontsize=7)
    return fig


def change_figure(study: Study):
    """Arms x module groups: the mean relative weight change ||dW|| / ||W|| (methods/change_map.py)."""
    arms = [a for a in study.arms if a.change]
    if not arms:
        return None
    import numpy as np
    groups = sorted({g for a in arms for g in a.change})
    grid = np.array([[a.change.get(g, 0.0) for g in groups] for a in arms])
    fig = new_figure(min(1.6 + 0.42 * len(groups), 12), 1.0 + 0.3 * len(arms))
    ax = fig.add_subplot()
    shown = np.log10(np.maximum(grid, 1e-6))
    image = ax.imshow(shown, cmap="viridis", vmin=-6, vmax=max(0.0, float(shown.max())), aspect="auto")
    ax.set_xticks(range(len(groups)), [text(f"{b} {k}" if c == "text_encoder" else f"unet {b} {k}")
                                       for c, b, k in groups], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(arms)), [text(a.label) for a in arms], fontsize=7)
    ax.grid(False)
    bar = fig.colorbar(image, ax=ax, fraction=0.04)
    bar.set_label("log10 relative change", fontsize=7)
    ax.set_title(text(f"{study.name}: where the change went"), fontsize=9)
    return fig


def study_figures(study: Study, prefix: str) -> list[tuple]:
    """(name, title, figure, caption) of every figure the study has."""
    specs = [
        ("pareto", "Erasure vs preservation per arm", pareto_figure(study),
         "Pooled over erased concepts: detection on target (x) and unrelated (y) prompts per arm, with 95% "
         "hierarchical bootstrap intervals; the dashed line joins the Pareto front; the ring is the original."),
        ("layers", "Per-layer ablation", layer_heatmap_figure(study),
         "Each cell trains one layer's MLP or self-attention only: the paired change in target detection "
         "(left, more negative = more erased) and in unrelated detection (right, more negative = more damage), "
         "percentage points with 95% intervals."),
        ("curve", "Trade-off against the swept value", curve_figure(study),
         "Target and unrelated detection against the swept hyperparameter, with 95% bands; dotted lines: the "
         "original model."),
        ("change", "Where the change went", change_figure(study),
         "Mean relative weight change of each module group (columns) per arm (rows), log scale; groups an arm "
         "did not touch are at the floor (1e-6)."),
    ]
    return [(f"{prefix}-{name}", title, fig, caption) for name, title, fig, caption in specs if fig is not None]
