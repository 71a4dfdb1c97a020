"""Degraded renders: how a concept looks when a generator draws it badly or an erasure half-removes it.

A judge that misses a faint or partly drawn target makes an erasure look stronger than it is, so
the model card measures every judge on these as well as on clean renders, and the independent
judge trains on them (bench/miniworld/train_judge.py). Each degradation takes uint8 (H, W, 3)
images and a seeded generator; ``strength`` 1 is the card's fixed setting, training draws it.

* ``vae``       -- through the mini SD's VAE (encode, posterior mode, decode): the generator's blur;
* ``contrast``  -- pulled towards the image's mean colour (a faint, washed-out concept);
* ``blur``      -- Gaussian blur (a soft, half-formed concept);
* ``occlusion`` -- a flat patch over part of the concept's box (a partly drawn concept).

    from bench.miniworld.degrade import degrade
    faint = degrade("contrast", image, box, rng)
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from bench.core.errors import EraselabError

# The card's settings (strength 1): contrast keeps 35% of the deviation from the mean colour,
# blur has a 1.5-pixel radius on a 64-pixel image, occlusion covers 40% of the concept's box.
CONTRAST_KEEP, BLUR_RADIUS, OCCLUDED_FRACTION = 0.35, 1.5, 0.40
PIXEL_DEGRADATIONS = ("contrast", "blur", "occlusion")
DEGRADATIONS = ("clean", "vae", *PIXEL_DEGRADATIONS)


def low_contrast(image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    keep = 1.0 - strength * (1.0 - CONTRAST_KEEP)
    x = image.astype(np.float32)
    mean = x.reshape(-1, 3).mean(axis=0)
    return np.clip(mean + keep * (x - mean), 0, 255).round().astype(np.uint8)


def blur(image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    radius = max(0.0, BLUR_RADIUS * strength)
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def occlude(image: np.ndarray, box, rng, strength: float = 1.0) -> np.ndarray:
    """A patch of the image's median colour over ``OCCLUDED_FRACTION * strength`` of ``box``
    ((x0, y0, x1, y1) in pixels, the renderer's box; the whole image when None), placed at
    random inside it."""
    h_img, w_img = image.shape[:2]
    x0, y0, x1, y1 = box if box is not None else (0, 0, w_img, h_img)
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    frac = min(1.0, OCCLUDED_FRACTION * strength)
    # a patch as wide as the box and tall enough to cover the fraction, or the other way round
    if rng.random() < 0.5:
        pw, ph = w, max(1, int(round(h * frac)))
    else:
        pw, ph = max(1, int(round(w * frac))), h
    px = int(x0 + rng.integers(0, max(1, w - pw + 1)))
    py = int(y0 + rng.integers(0, max(1, h - ph + 1)))
    out = image.copy()
    colour = np.median(image.reshape(-1, 3), axis=0).astype(np.uint8)
    out[max(0, py):min(h_img, py + ph), max(0, px):min(w_img, px + pw)] = colour
    return out


def degrade(kind: str, image: np.ndarray, box, rng, strength: float = 1.0) -> np.ndarray:
    """One pixel degradation of one image (``vae`` needs the model: ``vae_roundtrip``)."""
    if kind == "clean":
        return image
    if kind == "contrast":
        return low_contrast(image, strength)
    if kind == "blur":
        return blur(image, strength)
    if kind == "occlusion":
        return occlude(image, box, rng, strength)
    raise EraselabError(f"unknown degradation {kind!r}; expected one of {', '.join(DEGRADATIONS)}")


def random_degradation(image: np.ndarray, vae_image: np.ndarray | None, boxes, rng, p_vae: float = 0.5,
                       p_degrade: float = 0.6, strength_range=(0.3, 1.3)) -> np.ndarray:
    """How a judge's training sees one image: its VAE copy with probability ``p_vae`` (when there
    is one), then, with probability ``p_degrade``, one pixel degradation at a strength drawn from
    ``strength_range`` over a random one of its ``boxes`` (the renderer's (concept, x0, y0, x1, y1))."""
    if vae_image is not None and rng.random() < p_vae:
        image = vae_image
    if rng.random() < p_degrade:
        kind = PIXEL_DEGRADATIONS[int(rng.integers(len(PIXEL_DEGRADATIONS)))]
        box = boxes[int(rng.integers(len(boxes)))] if boxes else None
        image = degrade(kind, image, None if box is None else tuple(int(v) for v in box[1:5]), rng,
                        float(rng.uniform(*strength_range)))
    return image


def vae_roundtrip(vae, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """uint8 (N, H, W, 3) through the VAE and back, as uint8."""
    from bench.miniworld.train_vae import roundtrip
    out = []
    for start in range(0, len(images), batch):
        x = roundtrip(vae, images[start:start + batch])
        out.append(((x.permute(0, 2, 3, 1).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8))
    return np.concatenate(out) if out else images[:0]


def load_pipeline_vae(root):
    """The shipped pipeline's VAE (the generator's own decoder), in float32."""
    import torch
    from diffusers import AutoencoderKL
    from pathlib import Path
    return AutoencoderKL.from_pretrained(str(Path(root) / "pipeline" / "vae"), torch_dtype=torch.float32).eval()
