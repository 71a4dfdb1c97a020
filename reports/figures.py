"""The report's figures: trade-off scatter, concept mapping, erasure cost (the image grids: grid.py).

    from reports.figures import tradeoff_figure, save
    save(tradeoff_figure(summary), out_dir / "figures", "tradeoff")   # -> tradeoff.png, tradeoff.pdf

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no display,
no global state). Every method keeps one marker, hatch and colour across all figures, and
markers/hatches carry the distinction on their own, so a greyscale print stays readable.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from reports.metrics import Summary
from reports.tables import fmt_number
from reports.rundata import ORIGINAL

# Okabe-Ito colours (colour-blind safe), ordered so neighbours differ in lightness too.
COLOURS = ["#000000", "#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
HATCHES = ["", "//", "..", "xx", "\\\\", "++", "oo", "--"]
RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
      "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
      "axes.grid": True, "grid.color": "#dddddd", "grid.linewidth": 0.6, "hatch.linewidth": 0.8,
      "savefig.dpi": 150, "pdf.fonttype": 42, "figure.dpi": 100}


def style(index: int) -> dict:
    """Marker, hatch and colour of the index-th method (0 = the original model).

    Markers and hatches cycle every 8 methods; the colour shifts by one on each new cycle, so that
    no two of the first 64 methods share both (the 13 registered ones did on a shared period)."""
    return {"color": COLOURS[(index + index // len(MARKERS)) % len(COLOURS)],
            "marker": MARKERS[index % len(MARKERS)], "hatch": HATCHES[index % len(HATCHES)]}


def text(s) -> str:
    """A user string safe for matplotlib: '$' would otherwise start mathtext."""
    return str(s).replace("\\", "\\\\").replace("$", r"\$")


def new_figure(width: float, height: float):
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.rcParams.update(RC)
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def annotated_cells(ax, values, fontsize: float):
    """Percentages (0-100) drawn as heat-map cells, each with its value (NaN cells blank)."""
    image = ax.imshow(values, cmap="magma", vmin=0, vmax=100, aspect="auto")
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            v = values[r, c]
            if not math.isnan(v):
                ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=fontsize,
                        color="white" if v < 55 else "black")
    return image


def heatmap_figure(values, rows: list[str], columns: list[str], label: str):
    """A rows x columns heat map of percentages (NaN cells blank), each cell annotated."""
    fig = new_figure(1.8 + 1.0 * len(columns), 1.0 + 0.35 * len(rows))
    ax = fig.add_subplot()
    image = annotated_cells(ax, values, fontsize=7)
    ax.set_xticks(range(len(columns)), [text(s) for s in columns], rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), [text(a) for a in rows], fontsize=7)
    ax.grid(False)
    bar = fig.colorbar(image, ax=ax, fraction=0.04)
    bar.set_label(label, fontsize=7)
    return fig


def save(fig, folder: Path, name: str) -> dict[str, Path]:
    """Write ``name.png`` and ``name.pdf`` into folder; returns {"png": path, "pdf": path}."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for ext in ("png", "pdf"):
        out[ext] = folder / f"{name}.{ext}"
        # Fixed metadata keeps the PDF identical from run to run (no creation date).
        meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
        fig.savefig(out[ext], metadata=meta)
    return out


def _method_index(summary: Summary) -> dict:
    return {key: i for i, key in enumerate(summary.methods)}


# Past this many methods a label beside each point collides with its neighbours: points carry
# their number and the legend, outside the axes, names them.
MAX_LABELLED_POINTS = 10


def tradeoff_figure(summary: Summary):
    """x: detection on target prompts (erasure: left is better), y: detection on unrelated prompts."""
    index = _method_index(summary)
    shown = [k for k in summary.methods
             if not summary.pooled[k]["det_target"].missing and not summary.pooled[k]["det_unrelated"].missing]
    numbered = len(shown) > MAX_LABELLED_POINTS
    fig = new_figure(9.0 if numbered else 5.2, 5.6 if numbered else 4.0)
    ax = fig.add_subplot()
    placed: list[tuple[float, float]] = []
    lowest = 100.0
    for number, key in enumerate(shown, start=1):
        est = summary.pooled[key]
        x, y = est["det_target"], est["det_unrelated"]
        st = style(index[key])
        name = text(summary.labels[key])
        ax.errorbar(100 * x.value, 100 * y.value,
                    xerr=[[100 * (x.value - x.lo)], [100 * (x.hi - x.value)]],
                    yerr=[[100 * (y.value - y.lo)], [100 * (y.hi - y.value)]],
                    fmt=st["marker"], color=st["color"], capsize=3, lw=1, mec=st["color"],
                    # The original is a large hollow ring on top, so a method that changed nothing
                    # (same point) stays visible inside it instead of hiding it.
                    ms=13 if key[1] == ORIGINAL else 8, mew=1.5 if key[1] == ORIGINAL else 1,
                    mfc="none" if key[1] == ORIGINAL else st["color"], zorder=5 if key[1] == ORIGINAL else 3,
                    label=f"{number}  {name}" if numbered else name)
        # Methods with (nearly) the same numbers, e.g. a no-op and the original, would print their
        # labels on top of each other: stack such labels downwards instead.
        near = sum(1 for px, py in placed if abs(px - x.value) < 0.08 and abs(py - y.value) < 0.05)
        placed.append((x.value, y.value))
        lowest = min(lowest, 100 * (y.lo if not math.isnan(y.lo) else y.value))
        ax.annotate(str(number) if numbered else name, (100 * x.value, 100 * y.value),
                    xytext=(6, 5 - 11 * near), textcoords="offset points", fontsize=8)
    ax.set_xlim(-3, 103)
    # preservation varies over a narrower range than erasure: start the y axis just below the data
    ax.set_ylim(max(-3.0, 10 * math.floor(lowest / 10) - 3), 103)
    ax.set_xlabel("Detection on target prompts (%)  \u2190 erased")
    ax.set_ylabel("Detection on unrelated prompts (%)  \u2192 preserved")
    ax.set_title("Erasure vs preservation (all erased concepts, 95% intervals)")
    if numbered:
        fig.legend(loc="outside right upper", frameon=False, ncols=math.ceil(len(shown) / 24), fontsize=7)
    elif shown:
        ax.legend(loc="lower left", frameon=True)
    return fig


# Past this many bars per label a grouped bar chart is unreadable: the mapping becomes a heat map.
MAX_MAPPING_BARS = 8


def _mapping_labels(series, concept: str, parent: str | None, top_k: int) -> list[str]:
    """The top_k labels by their largest share in any series, plus the concept and its parent."""
    score = {}
    for _, dist, _ in series:
        for label, p in dist.items():
            score[label] = max(score.get(label, 0.0), p)
    labels = sorted(score, key=lambda l: -score[l])[:top_k]
    for must in (concept, parent):  # the concept itself and its parent are always shown
        if must and must not in labels:
            labels.append(must)
    return labels


def _mapping_tick(label: str, concept: str, parent: str | None) -> str:
    if parent and label == parent:
        return f"\u25b6 {text(label)} (parent)"
    return text(label) + (" (itself)" if label == concept else "")


def _mapping_rows(analyses: list[dict]) -> int:
    """Series per concept panel: the original model and the most methods any concept has."""
    return 1 + max(Counter(a["concept"] for a in analyses).values())


def mapping_heatmap_figure(analyses: list[dict], top_k: int = 6):
    """The mapping for many methods: per erased concept a panel, rows the original model and each
    method, columns the top labels, cells the share (%)."""
    import numpy as np
    concepts = list(dict.fromkeys(a["concept"] for a in analyses))
    n_rows = _mapping_rows(analyses)
    fig = new_figure(2.2 + 2.9 * len(concepts), 1.6 + 0.17 * n_rows)
    axes = fig.subplots(1, len(concepts), squeeze=False)[0]
    image = None
    for ax, concept in zip(axes, concepts):
        group = [a for a in analyses if a["concept"] == concept]
        parent = group[0].get("parent")
        series = [("original (before)", group[0]["dist_before"], 0)]
        series += [(a["label"], a["dist_after"], 1) for a in group]
        labels = _mapping_labels(series, concept, parent, top_k)
        values = np.array([[100 * dist.get(l, 0.0) for l in labels] for _, dist, _ in series])
        image = annotated_cells(ax, values, fontsize=5.5)
        ax.set_xticks(range(len(labels)), [_mapping_tick(l, concept, parent) for l in labels],
                      rotation=35, ha="right", fontsize=7)
        ax.set_yticks(range(len(series)), [text(name) for name, _, _ in series], fontsize=6.5)
        ax.grid(False)
        ax.set_title(f"\u201c{text(concept)}\u201d prompts: what the images show", fontsize=8)
    bar = fig.colorbar(image, ax=list(axes), fraction=0.03)
    bar.set_label(f"{analyses[0]['basis'] or 'share of images'} (%)", fontsize=7)
    return fig


def mapping_figure(analyses: list[dict], summary: Summary, top_k: int = 6):
    """Per erased concept: the label distribution before and after each method; parent highlighted."""
    concepts = list(dict.fromkeys(a["concept"] for a in analyses))
    if not concepts:
        return None
    if _mapping_rows(analyses) > MAX_MAPPING_BARS:
        return mapping_heatmap_figure(analyses, top_k)
    index = _method_index(summary)
    n = len(concepts)
    cols = min(n, 2)
    rows_n = math.ceil(n / cols)
    fig = new_figure(5.2 * cols, 0.5 + 2.9 * rows_n)
    for i, concept in enumerate(concepts):
        ax = fig.add_subplot(rows_n, cols, i + 1)
        group = [a for a in analyses if a["concept"] == concept]
        parent = group[0].get("parent")
        before = group[0]["dist_before"]
        series = [("original (before)", before, 0)]  # index 0: drawn white, no hatch
        series += [(f"{a['label']} (after)", a["dist_after"], index[a["method_key"]]) for a in group]
        labels = _mapping_labels(series, concept, parent, top_k)
        height = 0.8 / len(series)
        for j, (name, dist, idx) in enumerate(series):
            st = style(idx)
            ys = [k + (j - (len(series) - 1) / 2) * height for k in range(len(labels))]
            ax.barh(ys, [100 * dist.get(l, 0.0) for l in labels], height=height * 0.95,
                    color=st["color"] if idx else "white", edgecolor="black", lw=0.6,
                    hatch=st["hatch"] if idx else "", label=text(name))
        for k, label in enumerate(labels):
            if parent and label == parent:
                ax.axhspan(k - 0.5, k + 0.5, color="#e8e8e8", zorder=0, lw=0)
        ax.set_yticks(range(len(labels)), [_mapping_tick(l, concept, parent) for l in labels])
        for tick, label in zip(ax.get_yticklabels(), labels):
            if parent and label == parent:
                tick.set_fontweight("bold")
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"{group[0]['basis'] or 'share of images'} (%)")
        ax.set_title(f"\u201c{text(concept)}\u201d prompts: what the images show")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="lower right", fontsize=7)
    return fig


def cost_figure(summary: Summary):
    """Erasure seconds per method (log scale): a bar per method (mean), a marker per edit."""
    index = _method_index(summary)
    keys = [k for k in summary.methods if k[1] != ORIGINAL]
    data = {k: [(r["concept"], r["seconds"].value) for r in summary.rows
                if (r["model"], r["method"], r["variant"]) == k and not r["seconds"].missing] for k in keys}
    keys = [k for k in keys if data[k]]
    if not keys:
        return None
    fig = new_figure(5.2, 0.9 + 0.45 * len(keys))
    ax = fig.add_subplot()
    concept_marker = {c: MARKERS[(i + 1) % len(MARKERS)] for i, c in enumerate(summary.concepts)}
    seen = set()
    for y, key in enumerate(keys):
        st = style(index[key])
        values = [s for _, s in data[key]]
        mean = sum(values) / len(values)
        ax.barh(y, mean, color=st["color"], edgecolor="black", hatch=st["hatch"], lw=0.6, height=0.6,
                alpha=0.85)
        # the value goes right of the bar and of every marker, which may lie past the mean
        ax.annotate(fmt_number(mean, "seconds"), (max(mean, *values), y), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=8)
        for concept, s in data[key]:
            ax.plot([s], [y], concept_marker[concept], color="black", mfc="white", ms=5,
                    label=None if concept in seen else text(concept))
            seen.add(concept)
    ax.set_yticks(range(len(keys)), [text(summary.labels[k]) for k in keys])
    ax.invert_yaxis()
    ax.set_xscale("log")
    everything = [s for k in keys for _, s in data[k] if s > 0]
    if everything:  # bars start at the left edge; leave room for the labels on the right
        ax.set_xlim(min(everything) / 3, max(everything) * 4)
    ax.set_xlabel("Erasure wall time (s, log scale)\nbar: mean; markers: one edit per concept")
    ax.set_title("Cost of erasure")
    ax.grid(axis="y", visible=False)
    if len(seen) > 1:
        ax.legend(loc="lower right", fontsize=7, title="concept", title_fontsize=7)
    return fig
