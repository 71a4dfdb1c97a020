"""Renderer of the mini world: 64x64 pictures of objects, instances and styles, with captions.

Public API (other eraselab code depends on exactly these names):
  ``render(concept, style="plain", seed=0, size=64) -> Sample``   one concept, deterministic;
  ``render_scene(seed, max_objects=3, size=64) -> Sample``        several objects with boxes;
  ``random_sample(seed, p_style=0.3, p_nothing=0.03) -> Sample`` training pairs;
  ``caption_for(concept, style, attributes, rng) -> str``          the training caption grammar;
  ``write_renders(concept, style, n, seed, out_dir)``             few-shot "real images" on disk;
  ``stable_seed(*parts)``, OBJECTS, INSTANCES, STYLES, COLOURS, BACKGROUNDS, NOTHING.

Pictures are drawn at twice the size and box-downsampled (anti-aliasing); every random choice
comes from ``numpy.random.default_rng(stable_seed(...))`` so the same arguments give the same
bytes on any machine. Try it: ``python -m bench.miniworld.render church "van gogh" 3 out.png``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.core.errors import EraselabError, suggest
from bench.core.files import write_png, write_text
from bench.miniworld.glyphs import GLYPHS, Pen
from bench.miniworld.styles import STYLE_NAMES, apply_style

OBJECTS: tuple[str, ...] = (
    "church", "parachute", "golf ball", "gas pump", "garbage truck", "tench", "french horn",
    "chain saw", "english springer", "cassette player", "tower", "apple")
INSTANCES: dict[str, str] = {
    "snoopy": "english springer", "eiffel tower": "tower", "notre dame": "church",
    "apple logo": "apple"}
STYLES: tuple[str, ...] = STYLE_NAMES
NOTHING = "nothing"

_COLOUR_RGB = {
    "red": (215, 35, 35), "green": (40, 165, 55), "blue": (40, 80, 215),
    "yellow": (240, 210, 30), "orange": (245, 135, 25), "purple": (130, 50, 175),
    "pink": (240, 120, 180), "brown": (130, 80, 40)}
COLOURS: tuple[str, ...] = tuple(_COLOUR_RGB)
BACKGROUNDS: tuple[str, ...] = ("plain", "sky", "grass", "night")

# Instances keep one look; the word is what a parent-naming caption calls that look.
_INSTANCE_LOOK = {
    "snoopy": ("white", (255, 255, 255)),
    "eiffel tower": ("brown", (150, 95, 50)),
    "notre dame": ("grey", (185, 178, 158)),
    "apple logo": ("grey", (160, 160, 168)),
}
_LOGO_BLACK = (28, 28, 30)
_PASTELS = ((245, 240, 225), (225, 235, 245), (240, 225, 230), (230, 240, 225),
            (238, 238, 238), (245, 235, 210))


@dataclass(frozen=True)
class Sample:
    image: np.ndarray   # uint8, (size, size, 3)
    caption: str
    concept: str        # object/instance name, or NOTHING
    style: str          # one of STYLES
    boxes: tuple        # ((label, x0, y0, x1, y1), ...) in pixels of the output image
    attributes: dict = field(default_factory=dict)  # JSON-serialisable
    # float (size, size) in [0, 1]: the pixels the objects (or the distractors) cover, before the
    # style is applied (the renderer's segmentation; MACE's masks in the mini world)
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)


def stable_seed(*parts) -> int:
    """A 63-bit seed from the parts' repr (sha256): stable across runs, unlike hash()."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# --- validation ---------------------------------------------------------------------------------

def _check(concept: str, style: str) -> None:
    known = list(OBJECTS) + list(INSTANCES) + [NOTHING]
    if concept not in known:
        raise EraselabError(f"unknown mini-world concept {concept!r}; {suggest(concept, known)}")
    if style not in STYLES:
        raise EraselabError(f"unknown mini-world style {style!r}; {suggest(style, STYLES)}")


def _pick(rng, seq):
    return seq[int(rng.integers(0, len(seq)))]


# --- backgrounds --------------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _background_bases(n: int) -> dict:
    """Per-canvas-size gradients and textures, computed once (the per-image cost is a copy)."""
    rng = np.random.default_rng(12345)
    t = np.linspace(0, 1, n, dtype=np.float32)[:, None, None]
    sky = (1 - t) * np.array([70, 135, 225.]) + t * np.array([195, 222, 250.])
    night = (1 - t) * np.array([8, 10, 35.]) + t * np.array([30, 30, 75.])
    grass = np.array([70, 150, 55.]) + rng.normal(0, 14, (n, n, 1)) * np.array([0.6, 1.0, 0.5])
    stars = []
    for _ in range(6):
        s = np.zeros((n, n), np.float32)
        ys, xs = rng.integers(0, n, 25), rng.integers(0, n, 25)
        s[ys, xs] = rng.uniform(0.5, 1.0, 25)
        stars.append(s)
    return {"sky": np.broadcast_to(sky, (n, n, 3)).astype(np.float32),
            "night": np.broadcast_to(night, (n, n, 3)).astype(np.float32),
            "grass": grass.astype(np.float32), "stars": stars}


def _background(name: str, n: int, rng) -> np.ndarray:
    """An n x n RGB background: plain light colour, sky gradient, grass field or starry night."""
    bases = _background_bases(n)
    jitter = rng.integers(-12, 13, 3)
    if name == "plain":
        img = np.empty((n, n, 3), np.float32)
        img[:] = np.array(_pick(rng, _PASTELS), np.float32)
    elif name == "sky":
        img = bases["sky"].copy()
    elif name == "grass":
        img = bases["sky"].copy()
        horizon = int(n * rng.uniform(0.25, 0.5))
        img[horizon:] = bases["grass"][horizon:]
    else:  # night
        img = bases["night"].copy()
        img += _pick(rng, bases["stars"])[..., None] * 220
    return np.clip(img + jitter, 0, 255).astype(np.uint8)


# --- sprites and composition --------------------------------------------------------------------

def _look(concept: str, background: str, rng) -> tuple[dict, tuple]:
    """Colour attributes and the RGB to draw with (base objects: a colour; instances: fixed)."""
    if concept in INSTANCES:
        word, rgb = _INSTANCE_LOOK[concept]
        if concept == "apple logo" and background != "night" and rng.random() < 0.5:
            word, rgb = "black", _LOGO_BLACK
        return {"colour": word}, rgb
    colour = _pick(rng, COLOURS)
    rgb = np.clip(np.array(_COLOUR_RGB[colour]) + rng.integers(-15, 16, 3), 0, 255)
    return {"colour": colour}, tuple(int(c) for c in rgb)


def _sprite(concept: str, rgb, long_side: float, flip: bool, angle: float, rng) -> Image.Image:
    """The glyph drawn in a box of its aspect, flipped/rotated, cropped to its visible pixels."""
    aspect, draw = GLYPHS[concept]
    w, h = (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
    m = int(0.2 * long_side) + 2  # margin so a small rotation never clips the glyph
    layer = Image.new("RGBA", (int(w) + 2 * m, int(h) + 2 * m), (0, 0, 0, 0))
    draw(Pen(layer, m, m, w, h), rgb, rng)
    if flip:
        layer = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if angle:
        layer = layer.rotate(angle, resample=Image.Resampling.BILINEAR)
    return layer.crop(layer.getchannel("A").getbbox())


def _pose(rng, long_side: float) -> dict:
    return {"flip": bool(rng.random() < 0.5), "angle": round(float(rng.uniform(-10, 10)), 1),
            "long_side": long_side}


def _finish(canvas: Image.Image, mask: Image.Image, placed: list, style: str, size: int, rng):
    """Downsample 2x, turn canvas boxes into output boxes, apply the style."""
    scale = size / canvas.width
    img = np.asarray(canvas.resize((size, size), Image.Resampling.BOX))
    m = np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0
    boxes = []
    for label, x, y, w, h in placed:
        x0, y0 = max(0, math.floor(x * scale)), max(0, math.floor(y * scale))
        x1, y1 = min(size, math.ceil((x + w) * scale)), min(size, math.ceil((y + h) * scale))
        boxes.append((label, int(x0), int(y0), int(x1), int(y1)))
    return np.ascontiguousarray(apply_style(style, img, m, rng)), tuple(boxes), m


def _paste(canvas, mask, sprite, x: int, y: int) -> None:
    alpha = sprite.getchannel("A")
    canvas.paste(sprite, (x, y), sprite)
    mask.paste(255, (x, y, x + sprite.width, y + sprite.height), alpha)


def _nothing(canvas: Image.Image, mask: Image.Image, rng) -> dict:
    """Distractors: an empty background, colour noise, random blobs or random strokes."""
    n = canvas.width
    kind = _pick(rng, ("empty", "noise", "blobs", "strokes"))
    if kind == "noise":
        noise = rng.integers(0, 256, (n // 4, n // 4, 3), dtype=np.uint8)
        canvas.paste(Image.fromarray(noise).resize((n, n), Image.Resampling.BILINEAR))
    elif kind in ("blobs", "strokes"):
        draw, mdraw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
        for _ in range(int(rng.integers(2, 6))):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            pts = [tuple(float(v) for v in rng.uniform(0, n, 2)) for _ in range(3)]
            if kind == "blobs":
                x, y = pts[0]
                r = float(rng.uniform(0.05, 0.2)) * n
                box = [x - r, y - r * rng.uniform(0.5, 1.5), x + r, y + r * rng.uniform(0.5, 1.5)]
                draw.ellipse(box, fill=colour)
                mdraw.ellipse(box, fill=255)
            else:
                width = int(rng.integers(2, 7))
                draw.line(pts, fill=colour, width=width, joint="curve")
                mdraw.line(pts, fill=255, width=width, joint="curve")
    return {"kind": kind}


def render(concept: str, style: str = "plain", seed: int = 0, size: int = 64,
           same_scene_in_every_style: bool = False) -> Sample:
    """One picture of `concept` (object, instance or NOTHING) in `style`; deterministic. With
    ``same_scene_in_every_style`` the scene (background, look, size, pose, place) depends on
    (concept, seed) alone, so one seed rendered in two styles shows the same scene twice: the
    pairs that the clip-image stage distils across. (The style is drawn after the scene.)"""
    _check(concept, style)
    if not isinstance(size, int) or size < 16:
        raise EraselabError(f"mini-world image size must be an integer >= 16, got {size!r}")
    rng = np.random.default_rng(stable_seed(concept, "any style" if same_scene_in_every_style else style, seed))
    n = 2 * size
    background = _pick(rng, BACKGROUNDS)
    canvas = Image.fromarray(_background(background, n, rng))
    mask = Image.new("L", (n, n), 0)
    attributes: dict = {"background": background}
    placed = []
    if concept == NOTHING:
        attributes.update(_nothing(canvas, mask, rng))
    else:
        size_word = "large" if rng.random() < 0.6 else "small"
        frac = rng.uniform(0.62, 0.9) if size_word == "large" else rng.uniform(0.32, 0.5)
        look, rgb = _look(concept, background, rng)
        pose = _pose(rng, round(float(frac), 3))
        sprite = _sprite(concept, rgb, frac * n, pose["flip"], pose["angle"], rng)
        x = int(rng.integers(0, max(1, n - sprite.width + 1)))
        y = int(rng.integers(0, max(1, n - sprite.height + 1)))
        _paste(canvas, mask, sprite, x, y)
        placed.append((concept, x, y, sprite.width, sprite.height))
        attributes.update(look, size=size_word, flip=pose["flip"], angle=pose["angle"])
    image, boxes, coverage = _finish(canvas, mask, placed, style, size, rng)
    caption = caption_for(concept, style, attributes, rng)
    return Sample(image, caption, concept, style, boxes, attributes, coverage)


def _overlap_ok(box, others, limit: float = 0.2) -> bool:
    """Boxes (x, y, w, h) may touch but not hide each other: intersection / smaller area."""
    x, y, w, h = box
    for ox, oy, ow, oh in others:
        iw = min(x + w, ox + ow) - max(x, ox)
        ih = min(y + h, oy + oh) - max(y, oy)
        if iw > 0 and ih > 0 and iw * ih > limit * min(w * h, ow * oh):
            return False
    return True


def render_scene(seed: int, max_objects: int = 3, size: int = 64) -> Sample:
    """1..max_objects objects/instances without heavy overlap, one style; for the detector."""
    if max_objects < 1:
        raise EraselabError(f"render_scene needs max_objects >= 1, got {max_objects}")
    rng = np.random.default_rng(stable_seed("scene", seed, max_objects))
    n = 2 * size
    style = STYLES[0] if rng.random() < 0.5 else _pick(rng, STYLES[1:])
    background = _pick(rng, BACKGROUNDS)
    canvas = Image.fromarray(_background(background, n, rng))
    mask = Image.new("L", (n, n), 0)
    names = list(OBJECTS) + list(INSTANCES)
    count = int(rng.integers(1, max_objects + 1))
    placed, items = [], []
    for _ in range(count):
        concept = _pick(rng, names)
        frac = float(rng.uniform(0.35, 0.55) if count > 1 else rng.uniform(0.4, 0.85))
        look, rgb = _look(concept, background, rng)
        pose = _pose(rng, round(frac, 3))
        sprite = _sprite(concept, rgb, frac * n, pose["flip"], pose["angle"], rng)
        for _try in range(30):
            x = int(rng.integers(0, max(1, n - sprite.width + 1)))
            y = int(rng.integers(0, max(1, n - sprite.height + 1)))
            if _overlap_ok((x, y, sprite.width, sprite.height), [p[1:] for p in placed]):
                _paste(canvas, mask, sprite, x, y)
                placed.append((concept, x, y, sprite.width, sprite.height))
                items.append({"concept": concept, **look, **pose})
                break
    image, boxes, coverage = _finish(canvas, mask, placed, style, size, rng)
    attributes = {"background": background, "objects": items}
    caption = _scene_caption(items, style, background, rng)
    return Sample(image, caption, items[0]["concept"], style, boxes, attributes, coverage)


def random_sample(seed: int, p_style: float = 0.3, p_nothing: float = 0.03) -> Sample:
    """A training pair: concept uniform over objects and instances (instances 1.5x as often)."""
    rng = np.random.default_rng(stable_seed("random_sample", seed))
    if rng.random() < p_nothing:
        concept = NOTHING
    else:
        names = list(OBJECTS) + list(INSTANCES)
        weights = np.array([1.0] * len(OBJECTS) + [1.5] * len(INSTANCES))
        concept = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    style = "plain" if rng.random() >= p_style else _pick(rng, STYLES[1:])
    return render(concept, style, seed=stable_seed("random_sample", seed, "render"))


# --- captions -----------------------------------------------------------------------------------

_SIZE_WORDS = {"small": ("small", "tiny"), "large": ("large", "big")}
_BACKGROUND_PHRASES = {
    "plain": ("on a plain background",), "sky": ("on a sky background", "against the sky"),
    "grass": ("on grass", "on the grass"), "night": ("at night",)}
_PREFIXES = ("a photo of", "a picture of", "an image of", "a rendering of", "a drawing of",
             "a painting of", "")
_STYLE_NOUNS = ("painting", "picture", "image", "drawing", "rendering")
_NOTHING_PHRASES = {
    "empty": ("an empty picture", "a blank image", "an empty scene", "nothing", "an empty background"),
    "noise": ("noise", "random noise", "a picture of noise", "an image of noise"),
    "blobs": ("random blobs", "some random blobs", "a picture of random blobs", "nothing, just blobs"),
    "strokes": ("random strokes", "some random lines", "an image of random strokes", "scribbles"),
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(concept: str, attributes: dict, rng, use_size: bool) -> str:
    """'a small red church', 'the tench', 'snoopy', 'the big eiffel tower', ..."""
    words = []
    if use_size and "size" in attributes:
        words.append(_pick(rng, _SIZE_WORDS[attributes["size"]]))
    if concept in INSTANCES:
        bare = concept in ("snoopy", "notre dame")
        if not words and bare:
            return concept
        words.append(concept)
        det = "the" if (not bare and rng.random() < 0.6) or rng.random() < 0.3 else _article(words[0])
        return f"{det} {' '.join(words)}"
    if "colour" in attributes and (rng.random() < 0.75 or not use_size):
        words.append(attributes["colour"])
    words.append(concept)
    det = "the" if rng.random() < 0.25 else _article(words[0])
    return f"{det} {' '.join(words)}"


# Words the CLIP BPE splits in two; the rest of the caption vocabulary is one token a word.
_TWO_TOKEN_WORDS = ("tench", "blobs", "scribbles")
MAX_CAPTION_TOKENS = 20


def caption_tokens(text: str) -> int:
    """CLIP token count of a caption (without start/end tokens), exact for this grammar."""
    words = text.replace(",", " , ").split()
    return len(words) + sum(w in _TWO_TOKEN_WORDS for w in words)


def caption_for(concept: str, style: str, attributes: dict, rng) -> str:
    """A short training caption. Most carry an attribute phrase (colour, size or background);
    a quarter are bare ("a drawing of a church", "snoopy"), so that prompts without attributes
    are in the training distribution, but with prefixes that no evaluation template uses, so
    that no evaluation prompt ("a photo of a church") is ever a training caption verbatim.
    Captions stay within MAX_CAPTION_TOKENS CLIP tokens (the text encoder's context is 32)."""
    if concept != NOTHING and rng.random() < BARE_CAPTION_SHARE:
        return _bare_caption(concept, style, rng)
    for _ in range(20):
        text = _caption_once(concept, style, attributes, rng)
        if caption_tokens(text) <= MAX_CAPTION_TOKENS:
            return text
    return text


BARE_CAPTION_SHARE = 0.25
_BARE_PREFIXES = ("a rendering of", "a drawing of", "")


def _bare_caption(concept: str, style: str, rng) -> str:
    """The concept with no attribute: never with "the" or an evaluation template's prefix."""
    if concept in INSTANCES and INSTANCES[concept] != "apple":  # named instances take no article
        noun = concept
    else:
        noun = f"{'an' if concept[0] in 'aeiou' else 'a'} {concept}"
    text = f"{_pick(rng, _BARE_PREFIXES)} {noun}".strip()
    return text if style == "plain" else f"{text} in the style of {style}"


def _caption_once(concept: str, style: str, attributes: dict, rng) -> str:
    if concept == NOTHING:
        return _nothing_caption(style, attributes, rng)
    use_size = rng.random() < 0.5
    use_bg = rng.random() < 0.5
    parent = ""
    if concept in INSTANCES and rng.random() < 0.3:
        parent = f", a {attributes.get('colour', '')} {INSTANCES[concept]}".replace("  ", " ")
    elif concept in INSTANCES and not use_size:
        use_bg = True  # an instance has no colour word: the background is its attribute
    phrase = _noun_phrase(concept, attributes, rng, use_size) + parent
    if parent and not (use_bg or use_size) and rng.random() < 0.5:
        use_bg = True
    bg = " " + _pick(rng, _BACKGROUND_PHRASES[attributes.get("background", "plain")]) if use_bg else ""
    if style == "plain":
        prefix = _pick(rng, _PREFIXES)
        text = f"{prefix} {phrase}{bg}".strip()
        if rng.random() < 0.12:
            text += " in the scene"
        return text
    form = int(rng.integers(0, 4))
    if form == 0:
        prefix = _pick(rng, _PREFIXES)
        return f"{prefix} {phrase}{bg} in the style of {style}".strip()
    if form == 1:
        return f"a {style} {_pick(rng, _STYLE_NOUNS)} of {phrase}{bg}"
    if form == 2:
        return f"{phrase}{bg}, {style} style"
    return f"{phrase}{bg} in {style} style"


def _nothing_caption(style: str, attributes: dict, rng) -> str:
    text = _pick(rng, _NOTHING_PHRASES[attributes.get("kind", "empty")])
    if attributes.get("kind") == "empty" and rng.random() < 0.5:
        text += " " + _pick(rng, _BACKGROUND_PHRASES[attributes.get("background", "plain")])
    if style != "plain":
        text += f" in the style of {style}" if rng.random() < 0.5 else f", {style} style"
    return text


def _scene_caption(items: list, style: str, background: str, rng) -> str:
    """'a scene with a red church and snoopy on grass in the style of neon', shortened (no
    background, short style phrase, no colours) until it fits MAX_CAPTION_TOKENS."""
    lead = _pick(rng, ("a scene with", "a picture of", "an image of"))
    bg = " " + _pick(rng, _BACKGROUND_PHRASES[background]) if rng.random() < 0.5 else ""
    lone_instance = len(items) == 1 and items[0]["concept"] in INSTANCES
    if lone_instance and not bg:
        bg = " " + _BACKGROUND_PHRASES[background][0]  # a lone instance keeps an attribute
    tail = f" in the style of {style}" if style != "plain" else ""
    short_tail = f", {style} style" if style != "plain" else ""
    variants = [(True, bg, tail), (True, "" if not lone_instance else bg, tail),
                (True, "" if not lone_instance else bg, short_tail), (False, "", short_tail)]
    for colours, bg_text, style_text in variants:
        text = f"{lead} {_listing(items, colours)}{bg_text}{style_text}"
        if caption_tokens(text) <= MAX_CAPTION_TOKENS:
            break
    return text


def _listing(items: list, colours: bool) -> str:
    parts = []
    for item in items:
        c = item["concept"]
        if c in INSTANCES:
            parts.append(c if c in ("snoopy", "notre dame") else f"the {c}")
        else:
            word = f"{item['colour']} {c}" if colours else c
            parts.append(f"{_article(word)} {word}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --- files --------------------------------------------------------------------------------------

def write_renders(concept: str, style: str, n: int, seed: int, out_dir) -> list[dict]:
    """Write n renders as out_dir/00000.png ... and out_dir/captions.jsonl; returns the records."""
    _check(concept, style)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(int(n)):
        render_seed = stable_seed(seed, i)
        sample = render(concept, style, seed=render_seed)
        name = f"{i:05d}.png"
        write_png(out / name, Image.fromarray(sample.image))
        records.append({"file": name, "caption": sample.caption, "concept": sample.concept,
                        "style": sample.style, "boxes": [list(b) for b in sample.boxes],
                        "seed": render_seed})
    text = "".join(json.dumps(r) + "\n" for r in records)
    write_text(out / "captions.jsonl", text)
    return records


def main(argv: list[str] | None = None) -> int:
    """python -m bench.miniworld.render CONCEPT [STYLE [SEED [OUT.png]]]: render one picture."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(__doc__)
        return 0
    concept, style = args[0], args[1] if len(args) > 1 else "plain"
    seed = int(args[2]) if len(args) > 2 else 0
    sample = render(concept, style, seed)
    print(sample.caption, sample.boxes, json.dumps(sample.attributes))
    if len(args) > 3:
        Image.fromarray(sample.image).save(args[3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
