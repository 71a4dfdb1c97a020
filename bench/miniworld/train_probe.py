"""Stage 5: fit the style probe (logistic regression on mini-CLIP image features).

    eraselab miniworld train probe

Classes: the four styles, "plain" and "nothing" (distractors), so that an image with no style
and an image with nothing in it are outcomes rather than forced into a style. Training renders
use the seed namespace 'probe-train', each also as a degraded copy (through the mini SD's VAE
with probability 0.5, then faint, blurred or partly covered with probability 0.6:
bench/miniworld/degrade.py), because a generator's styles come out soft and the clean-only probe
recognised only 53-58% of blurred or faint styles; accuracy is measured on 'probe-val' renders. Needs the
clip/ stage. Writes probe/probe.safetensors + probe/probe.json (no pickle) and metrics.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bench.miniworld import render as mw

N_PER_CLASS = 400
N_VAL_PER_CLASS = 100


def _renders(namespace: str, n_per_class: int):
    """Renders of every style (any object) and of distractors, with their labels and boxes."""
    samples, labels = [], []
    concepts = list(mw.OBJECTS) + list(mw.INSTANCES)
    for style in mw.STYLES:
        for i in range(n_per_class):
            concept = concepts[i % len(concepts)]
            samples.append(mw.render(concept, style, mw.stable_seed(namespace, style, i)))
            labels.append(style)
    for i in range(n_per_class):
        samples.append(mw.render(mw.NOTHING, "plain", mw.stable_seed(namespace, "nothing", i)))
        labels.append(mw.NOTHING)
    return np.stack([s.image for s in samples]), labels, [list(s.boxes) for s in samples]


def _degraded_copies(images, boxes, root: Path) -> np.ndarray:
    """One degraded copy of every image (bench.miniworld.degrade.random_degradation), seeded."""
    from bench.miniworld.degrade import load_pipeline_vae, random_degradation, vae_roundtrip
    vae_images = vae_roundtrip(load_pipeline_vae(root), images)
    rng = np.random.default_rng(mw.stable_seed("probe-degrade", len(images)))
    return np.stack([random_degradation(im, v, b, rng) for im, v, b in zip(images, vae_images, boxes)])


def train(out_dir: Path, ckpt_dir: Path, root: Path, steps: int | None = None, resume: bool = False,
          progress: bool = True) -> dict:
    from bench.miniworld.clip_model import image_embeddings, load_clip
    from detectors.style_probe import fit_style_probe
    t0 = time.time()
    clip = load_clip(Path(root) / "clip")
    train_images, train_labels, train_boxes = _renders("probe-train", N_PER_CLASS)
    train_images = np.concatenate([train_images, _degraded_copies(train_images, train_boxes, Path(root))])
    train_labels = train_labels + train_labels
    val_images, val_labels, _ = _renders("probe-val", N_VAL_PER_CLASS)
    train_feats = image_embeddings(clip, train_images).numpy()
    val_feats = image_embeddings(clip, val_images).numpy()
    probe = fit_style_probe(train_feats, train_labels)
    predicted = [label for label, _ in probe.predict(val_feats)]
    # predict() maps "plain" and low-confidence answers to "nothing": score against that reading.
    expected = [("nothing" if label in ("plain", mw.NOTHING) else label) for label in val_labels]
    per_class = {}
    for cls in sorted(set(expected)):
        hits = [p == e for p, e in zip(predicted, expected) if e == cls]
        per_class[cls] = round(float(np.mean(hits)), 4)
    files = probe.save(out_dir)
    metrics = {"stage": "probe", "n_train_per_class": N_PER_CLASS, "n_val_per_class": N_VAL_PER_CLASS,
               "classes": probe.classes, "val_accuracy": round(float(np.mean(
                   [p == e for p, e in zip(predicted, expected)])), 4),
               "val_accuracy_per_class": per_class, "seconds": round(time.time() - t0, 1),
               "file_bytes": {Path(f).name: Path(f).stat().st_size for f in files}}
    (Path(out_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
