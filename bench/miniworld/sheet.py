"""Contact sheet of the mini world: every concept, style and the distractors on one PNG.

Run ``python -m bench.miniworld.sheet OUT.png [SEED]`` and look at the file: one row per object
and instance (varied colour, size, pose, background), one row per style (the same objects in
that style) and a row of "nothing" distractors, each labelled on the left, pictures upscaled 2x.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bench.core.files import write_png
from bench.miniworld.render import INSTANCES, NOTHING, OBJECTS, STYLES, render

LABEL_WIDTH = 120
SCALE = 2


def _rows(seed: int, per_row: int) -> list[tuple[str, list]]:
    rows = []
    for concept in list(OBJECTS) + list(INSTANCES):
        rows.append((concept, [render(concept, "plain", seed * 1000 + i) for i in range(per_row)]))
    # Style rows cycle through the concepts so each style is seen on many different glyphs.
    names = list(OBJECTS) + list(INSTANCES)
    for style in STYLES[1:]:
        picks = [names[(seed + i * 2) % len(names)] for i in range(per_row)]
        rows.append((style, [render(c, style, seed * 1000 + i) for i, c in enumerate(picks)]))
    rows.append((NOTHING, [render(NOTHING, "plain", seed * 1000 + i) for i in range(per_row)]))
    return rows


def make_contact_sheet(out_path, seed: int = 0, per_row: int = 8) -> Path:
    """Write the contact sheet PNG to out_path (atomically) and return its path."""
    rows = _rows(seed, per_row)
    cell = 64 * SCALE + 4
    sheet = Image.new("RGB", (LABEL_WIDTH + per_row * cell, len(rows) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, (label, samples) in enumerate(rows):
        y = r * cell
        draw.text((6, y + cell // 2 - 6), label, fill=(0, 0, 0), font=font)
        for i, sample in enumerate(samples):
            tile = Image.fromarray(sample.image).resize((64 * SCALE, 64 * SCALE), Image.NEAREST)
            sheet.paste(tile, (LABEL_WIDTH + i * cell + 2, y + 2))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, sheet)
    return out


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "miniworld_sheet.png"
    print(make_contact_sheet(target, seed=int(sys.argv[2]) if len(sys.argv) > 2 else 0))
