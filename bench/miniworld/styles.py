"""Style filters of the mini world: van gogh, pixel art, sketch, neon (and plain, the identity).

``apply_style(style, image, mask, rng)`` turns a rendered 64x64 picture (uint8 HxWx3) and its
object mask (float HxW in [0, 1]) into the styled picture. Each style changes the whole image in
a way a style probe can see at a glance, while the objects' silhouettes stay recognisable so the
detector still finds them. Textures (swirls, brush streaks, hatching) are computed once per image
size and cached, so a style costs well under a millisecond. Not run directly; see
``python -m bench.miniworld.sheet OUT.png``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

STYLE_NAMES = ("plain", "van gogh", "pixel art", "sketch", "neon")


def _edges(a: np.ndarray) -> np.ndarray:
    """Gradient magnitude of a 2-D float array (same shape), cheap forward differences."""
    g = np.zeros_like(a)
    g[:, :-1] += np.abs(np.diff(a, axis=1))
    g[:-1, :] += np.abs(np.diff(a, axis=0))
    return g


@lru_cache(maxsize=8)
def _swirl_texture(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2x-sized starry-night sky (blue/yellow swirls) and a brush-streak field, float32."""
    n = 2 * size
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / n
    rng = np.random.default_rng(1889)
    # Stream function of a few vortices: its level lines are swirling strokes.
    psi = np.zeros_like(x)
    for _ in range(7):
        cx, cy, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.choice([-1, 1]) * rng.uniform(.5, 1)
        psi += s * np.log(np.hypot(x - cx, y - cy) + 0.03)
    psi += 2.0 * y
    strokes = 0.5 + 0.5 * np.sin(psi * 9.0)
    blend = 0.5 + 0.5 * np.sin(psi * 2.3 + 1.0)
    deep, light = np.array([25, 50, 140.]), np.array([90, 140, 215.])
    yellow = np.array([240, 210, 80.])
    sky = deep * (1 - strokes[..., None]) + light * strokes[..., None]
    yellow_w = np.clip((blend - 0.72) * 4, 0, 1)[..., None] * strokes[..., None]
    sky = sky * (1 - yellow_w) + yellow * yellow_w
    # A few glowing star rings, the other signature of the style.
    for _ in range(3):
        cx, cy = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.5)
        r = np.hypot(x - cx, y - cy)
        ring = np.clip(1 - r / 0.09, 0, 1) * (0.6 + 0.4 * np.sin(r * 160))
        sky = sky * (1 - ring[..., None]) + yellow * ring[..., None]
    streak = 0.5 + 0.5 * np.sin(psi * 14.0 + 3 * x)
    return sky.astype(np.float32), streak.astype(np.float32)


@lru_cache(maxsize=8)
def _hatching(size: int) -> np.ndarray:
    """Diagonal pencil hatching in [0, 1] with a little jitter, 2x-sized for random crops."""
    n = 2 * size
    y, x = np.mgrid[0:n, 0:n]
    rng = np.random.default_rng(7)
    lines = ((x + y) % 4 == 0).astype(np.float32) * rng.uniform(0.5, 1.0, (n, n))
    return lines.astype(np.float32)


def _crop(tex: np.ndarray, h: int, w: int, rng) -> np.ndarray:
    """A random h x w window of a texture, possibly mirrored, so images do not all look alike."""
    y0 = int(rng.integers(0, tex.shape[0] - h + 1))
    x0 = int(rng.integers(0, tex.shape[1] - w + 1))
    out = tex[y0:y0 + h, x0:x0 + w]
    return out[:, ::-1] if rng.random() < 0.5 else out


def van_gogh(img: np.ndarray, mask: np.ndarray, rng) -> np.ndarray:
    h, w = mask.shape
    sky, streak = _swirl_texture(h)
    sky, streak = _crop(sky, h, w, rng), _crop(streak, h, w, rng)
    obj = img.astype(np.float32)
    # Saturate and brush the object so it reads as paint, not a photo.
    grey = obj.mean(axis=2, keepdims=True)
    obj = grey + (obj - grey) * 1.4
    obj = obj * (0.7 + 0.55 * streak[..., None])
    m = mask[..., None]
    out = sky * (1 - m) + obj * m
    outline = np.clip(_edges(mask) * 1.5, 0, 1)[..., None]
    out = out * (1 - outline) + np.array([20, 30, 90.]) * outline
    return np.clip(out, 0, 255).astype(np.uint8)


def pixel_art(img: np.ndarray, mask: np.ndarray, rng) -> np.ndarray:
    h, w = mask.shape
    block = max(2, h // 16)
    small = Image.fromarray(img).resize((w // block, h // block), Image.BOX)
    # Few colours and hard edges: quantise the small image, then blow it up with nearest.
    small = small.quantize(colors=8, method=Image.Quantize.FASTOCTREE).convert("RGB")
    return np.asarray(small.resize((w, h), Image.NEAREST))


def sketch(img: np.ndarray, mask: np.ndarray, rng) -> np.ndarray:
    h, w = mask.shape
    lum = img.astype(np.float32).mean(axis=2) / 255.0
    lines = np.clip(_edges(lum) * 2.2 + _edges(mask) * 1.2, 0, 1)
    hatch = _crop(_hatching(h), h, w, rng)
    shading = hatch * np.clip(1.1 - lum, 0, 1) * mask
    paper = 245 + rng.integers(-6, 7, size=(h, w))
    grey = paper - 200 * lines - 110 * shading
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def neon(img: np.ndarray, mask: np.ndarray, rng) -> np.ndarray:
    h, w = mask.shape
    f = img.astype(np.float32)
    lum = f.mean(axis=2) / 255.0
    lines = np.clip(_edges(mask) * 1.6 + _edges(lum) * 1.2 * mask, 0, 1)
    # Neon colour: the object's own hue pushed to full brightness; greys get a random neon hue.
    bright = f / (f.max(axis=2, keepdims=True) + 1.0) * 255.0
    sat = (f.max(axis=2) - f.min(axis=2)) < 40
    hue = np.array([(255, 40, 220), (40, 240, 255), (120, 255, 60), (255, 230, 40)][
        int(rng.integers(0, 4))], dtype=np.float32)
    bright[sat] = hue
    glow_src = np.clip(lines[..., None] * bright, 0, 255).astype(np.uint8)
    glow = np.asarray(Image.fromarray(glow_src).filter(ImageFilter.GaussianBlur(2)),
                      dtype=np.float32)
    dark = np.array([12, 6, 28.])
    out = dark + glow * 1.8 + lines[..., None] * (bright * 0.6 + 100)
    return np.clip(out, 0, 255).astype(np.uint8)


FILTERS = {"van gogh": van_gogh, "pixel art": pixel_art, "sketch": sketch, "neon": neon}


def apply_style(style: str, img: np.ndarray, mask: np.ndarray, rng) -> np.ndarray:
    """Styled copy of `img` (uint8 HxWx3); `mask` marks the objects; 'plain' returns it as is."""
    if style == "plain":
        return img
    return FILTERS[style](img, mask, rng)
