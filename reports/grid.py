"""Image grids: one per erased concept, the same seeds across methods.

    from reports.grid import grid_figure
    fig = grid_figure(run, summary, "snoopy")    # rows: original first, then each method

Columns are (prompt, sample) pairs, hence the same seed, for every row: up to ``n_target``
target-prompt images (spread over different prompts), a gap, then ``n_unrelated`` images of one
unrelated prompt, so erasure and preservation show side by side. A pair is used only when every
method has its image; a method that lacks one shows a blank, labelled cell.
"""

from __future__ import annotations

import textwrap

from reports import rundata as rd
from reports.figures import new_figure, text


def _pick_columns(rows, methods, prompt_set: str, n: int) -> list[tuple]:
    """Up to n (prompt_id, sample) keys of one prompt set, present for as many methods as possible."""
    sel = rows[rows[rd.PROMPT_SET] == prompt_set]
    have: dict[tuple, set] = {}
    for pid, sample, model, method, variant in zip(sel[rd.PROMPT_ID], sel[rd.SAMPLE], sel[rd.MODEL].astype(str),
                                                   sel[rd.METHOD].astype(str), sel[rd.VARIANT]):
        have.setdefault((pid, sample), set()).add((model, method, variant))
    complete = [k for k, m in have.items() if set(methods) <= m] or list(have)
    complete.sort(key=lambda k: (str(k[0]), k[1]))
    if prompt_set == "unrelated":  # one unrelated prompt, several of its samples
        first = complete[0][0] if complete else None
        return [k for k in complete if k[0] == first][:n]
    # Round-robin over prompts so the target columns show different prompts before repeating one.
    by_prompt: dict[object, list] = {}
    for k in complete:
        by_prompt.setdefault(k[0], []).append(k)
    picked = []
    while len(picked) < n and any(by_prompt.values()):
        for pid in list(by_prompt):
            if by_prompt[pid] and len(picked) < n:
                picked.append(by_prompt[pid].pop(0))
    return picked


def grid_figure(run, summary, concept: str, n_target: int = 4, n_unrelated: int = 2):
    from PIL import Image

    df = run.results
    rows = df[df[rd.CONCEPT].astype(str) == concept]
    methods = [k for k in summary.methods
               if ((rows[rd.MODEL].astype(str) == k[0]) & (rows[rd.METHOD].astype(str) == k[1])
                   & (rows[rd.VARIANT] == k[2])).any()]
    target = _pick_columns(rows, methods, "target", n_target)
    unrelated = _pick_columns(rows, methods, "unrelated", n_unrelated)
    if not target and not unrelated:
        return None
    # A narrow empty column separates the target block from the unrelated one.
    columns = [("target", k) for k in target] + ([(None, None)] if target and unrelated else []) \
        + [("unrelated", k) for k in unrelated]
    widths = [0.25 if kind is None else 1 for kind, _ in columns]
    cell = 1.15
    fig = new_figure(1.3 + cell * sum(widths), 0.9 + cell * len(methods))
    gs = fig.add_gridspec(len(methods), len(columns), width_ratios=widths)
    index = {(str(m), str(me), v, pid, s): p for m, me, v, pid, s, p in
             zip(rows[rd.MODEL], rows[rd.METHOD], rows[rd.VARIANT], rows[rd.PROMPT_ID], rows[rd.SAMPLE],
                 rows[rd.IMAGE_PATH])}
    prompts = dict(zip(zip(rows[rd.PROMPT_ID], rows[rd.SAMPLE]), rows[rd.PROMPT]))
    seeds = dict(zip(zip(rows[rd.PROMPT_ID], rows[rd.SAMPLE]), rows[rd.SEED]))
    for i, key in enumerate(methods):
        for j, (kind, col) in enumerate(columns):
            if kind is None:
                continue
            ax = fig.add_subplot(gs[i, j])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_linewidth(0.5)
            path = index.get((*key, *col))
            if path is None:
                ax.text(0.5, 0.5, "no image", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            else:
                with Image.open(run.path / str(path)) as im:
                    ax.imshow(im.convert("RGB"), interpolation="nearest")
            if i == 0:
                prompt = textwrap.shorten(str(prompts[col]), 34, placeholder="\u2026")
                ax.set_title(f"{kind}\n{text(textwrap.fill(prompt, 17))}\nseed {seeds[col]}", fontsize=6.5)
            if j == 0:
                ax.set_ylabel(text(summary.labels[key]), fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(f"\u201c{text(concept)}\u201d: target prompts (left) and an unrelated prompt (right), "
                 f"same seeds in every row", fontsize=9)
    return fig
