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

from bench.core.errors import EraselabError
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


def _read(path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise EraselabError(f"{path}: cannot read image ({type(exc).__name__})") from None


def grid_figure(run, summary, concept: str, n_target: int = 4, n_unrelated: int = 2):
    df = run.results
    rows = df[df[rd.CONCEPT].astype(str) == concept]
    if rd.SUITE_SEED in rows.columns and rows[rd.SUITE_SEED].nunique() > 1:
        # Repeats of the run share prompt ids and sample indices: show the first suite seed's images.
        rows = rows[rows[rd.SUITE_SEED] == sorted(rows[rd.SUITE_SEED].unique())[0]]
    methods = [k for k in summary.methods
               if ((rows[rd.MODEL].astype(str) == k[0]) & (rows[rd.METHOD].astype(str) == k[1])
                   & (rows[rd.VARIANT] == k[2])).any()]
    target = _pick_columns(rows, methods, "target", n_target)
    unrelated = _pick_columns(rows, methods, "unrelated", n_unrelated)
    if not target and not unrelated:
        return None
    # Tiles are pasted into one mosaic drawn by a single imshow: a subplot per image made the
    # layout engine the slowest part of the report (seconds per grid on a busy machine).
    import numpy as np

    tile, gap, block_gap = 128, 6, 30
    columns = [("target", k) for k in target] + [("unrelated", k) for k in unrelated]
    xs, x = [], 0
    for j, (kind, _) in enumerate(columns):
        if j and kind != columns[j - 1][0]:
            x += block_gap - gap  # a wider gap between the target block and the unrelated one
        xs.append(x)
        x += tile + gap
    width, height = x - gap, len(methods) * (tile + gap) - gap
    mosaic = np.full((height, width, 3), 255, dtype=np.uint8)
    index = {(str(m), str(me), v, pid, s): p for m, me, v, pid, s, p in
             zip(rows[rd.MODEL], rows[rd.METHOD], rows[rd.VARIANT], rows[rd.PROMPT_ID], rows[rd.SAMPLE],
                 rows[rd.IMAGE_PATH])}
    prompts = dict(zip(zip(rows[rd.PROMPT_ID], rows[rd.SAMPLE]), rows[rd.PROMPT]))
    seeds = dict(zip(zip(rows[rd.PROMPT_ID], rows[rd.SAMPLE]), rows[rd.SEED]))
    missing = []
    for i, key in enumerate(methods):
        y = i * (tile + gap)
        for j, (kind, col) in enumerate(columns):
            path = index.get((*key, *col))
            if path is None:
                mosaic[y:y + tile, xs[j]:xs[j] + tile] = 230
                missing.append((xs[j] + tile / 2, y + tile / 2))
                continue
            im = _read(run.path / str(path))
            # Small images are enlarged by pixel repetition (crisp), large ones downsampled smoothly.
            from PIL import Image
            im = im.resize((tile, tile), Image.NEAREST if im.width <= tile else Image.LANCZOS)
            mosaic[y:y + tile, xs[j]:xs[j] + tile] = np.asarray(im)

    scale = 0.9 / tile  # inches per mosaic pixel: 0.9 inch per image
    fig = new_figure(1.4 + width * scale, 1.2 + height * scale)
    ax = fig.add_subplot()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for cx, cy in missing:
        ax.text(cx, cy, "no image", ha="center", va="center", fontsize=7)
    for j, (kind, col) in enumerate(columns):
        prompt = textwrap.shorten(str(prompts[col]), 34, placeholder="\u2026")
        ax.text(xs[j] + tile / 2, -8, f"{kind}\n{text(textwrap.fill(prompt, 18))}\nseed \u2026{str(seeds[col])[-5:]}",
                ha="center", va="bottom", fontsize=6.5)
    for i, key in enumerate(methods):
        ax.text(-10, i * (tile + gap) + tile / 2, text(summary.labels[key]), ha="right", va="center", fontsize=8)
    fig.suptitle(f"\u201c{text(concept)}\u201d: target prompts (left) and an unrelated prompt (right), "
                 f"same seeds in every row", fontsize=9)
    return fig
