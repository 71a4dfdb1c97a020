"""Stage 6: train the independent judge (detectors/cnn_judge.py: a small CNN, objects + styles).

    eraselab miniworld train judge [--resume] [--steps N]

Why its own data: it exists to catch what the mini YOLO and the style probe miss, above all a
faint or half-drawn target, so it learns from what a generator that half-erased a concept draws.
Data (seed namespace 'judge-train'): single renders of every object and instance in every style,
distractors ("nothing", every style) and multi-object scenes; each image is stored clean and
through the mini SD's VAE. A batch takes the VAE copy of an image with probability 0.5 and then,
with probability 0.6, one of the pixel degradations (bench/miniworld/degrade.py: low contrast,
blur, occlusion) at a strength drawn from [0.3, 1.3]. Loss: binary cross-entropy per object
(a scene holds several), summed over the objects, + cross-entropy over the styles. AdamW, lr
2e-3, 100 warm-up steps, cosine decay, batch 64, 5,000 steps. Validation (namespace 'judge-val') reports recall and false alarms per
degradation. Needs the vae stage (the pipeline's VAE). Writes judge/judge.safetensors +
judge/judge.json (no pickle) and judge/metrics.json; checkpoints under checkpoints/judge.pt.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.miniworld import render as mw

SEED = 11
STEPS = 5000
BATCH = 64
LR = 2e-3
WARMUP = 100
N_PER_CONCEPT_STYLE = 60      # single renders per (object or instance, style)
N_NOTHING_PER_STYLE = 360
N_SCENES = 2400
N_VAL_PER_CONCEPT = 40
P_VAE, P_DEGRADE = 0.5, 0.6
STRENGTH_RANGE = (0.3, 1.3)
CHECKPOINT_EVERY = 500


def judge_classes() -> tuple[list[str], list[str]]:
    from detectors.cnn_judge import style_classes
    return list(mw.OBJECTS) + list(mw.INSTANCES), style_classes(mw.STYLES[1:])


def judge_samples(namespace: str, per_concept_style: int, nothing_per_style: int, scenes: int) -> list:
    """The renders of one split: (Sample, object names in it) in a fixed order."""
    objects, _ = judge_classes()
    out = []
    for concept in objects:
        for style in mw.STYLES:
            for i in range(per_concept_style):
                out.append((mw.render(concept, style, mw.stable_seed(namespace, concept, style, i)), [concept]))
    for style in mw.STYLES:
        for i in range(nothing_per_style):
            out.append((mw.render(mw.NOTHING, style, mw.stable_seed(namespace, "nothing", style, i)), []))
    for i in range(scenes):
        sample = mw.render_scene(mw.stable_seed(namespace, "scene", i))
        out.append((sample, sorted({b[0] for b in sample.boxes})))
    return out


def _arrays(samples, objects, styles):
    images = np.stack([s.image for s, _ in samples])
    targets = np.zeros((len(samples), len(objects)), dtype=np.float32)
    for row, (_, names) in enumerate(samples):
        for name in names:
            targets[row, objects.index(name)] = 1.0
    style_idx = np.array([styles.index(s.style) for s, _ in samples], dtype=np.int64)
    boxes = [list(s.boxes) for s, _ in samples]
    return images, targets, style_idx, boxes


def _pixel_box(box):
    return None if box is None else tuple(int(v) for v in box[1:5])


def augment(images, vae_images, boxes, indices, rng) -> np.ndarray:
    """A batch as the judge trains on it (bench.miniworld.degrade.random_degradation)."""
    from bench.miniworld.degrade import random_degradation
    return np.stack([random_degradation(images[i], vae_images[i], boxes[i], rng, P_VAE, P_DEGRADE, STRENGTH_RANGE)
                     for i in indices])


def _lr_at(step: int, steps: int) -> float:
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    return LR * 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / max(1, steps - WARMUP)))


def _cached(path: Path, make) -> np.ndarray:
    if path.is_file():
        return np.load(path, allow_pickle=False)
    array = make()
    from bench.miniworld.data import save_npy
    save_npy(path, array)
    return array


def validation(net, vae, objects, styles, progress: bool = False) -> dict:
    """Recall on the concept's own class and false alarms on distractors, per degradation."""
    from bench.miniworld.degrade import DEGRADATIONS, degrade, vae_roundtrip
    from detectors.cnn_judge import THRESHOLD, judge_probabilities
    samples = judge_samples("judge-val", N_VAL_PER_CONCEPT // len(mw.STYLES) or 1, 40, 0)
    images, targets, style_idx, boxes = _arrays(samples, objects, styles)
    is_nothing = targets.sum(axis=1) == 0
    out = {}
    rng = np.random.default_rng(mw.stable_seed("judge-val-degrade", SEED))
    for kind in DEGRADATIONS:
        if kind == "vae":
            batch = vae_roundtrip(vae, images)
        else:
            batch = np.stack([degrade(kind, im, _pixel_box(b[0]) if b else None, rng) for im, b in zip(images, boxes)])
        p_obj, p_sty = judge_probabilities(net, batch)
        hit = (p_obj >= THRESHOLD)
        recall = float(hit[targets == 1].mean())
        false_alarm = float(hit[is_nothing].any(axis=1).mean())
        styled = style_idx > 0
        style_recall = float((p_sty[styled, style_idx[styled]] >= THRESHOLD).mean())
        out[kind] = {"object_recall": round(recall, 4), "nothing_false_alarm": round(false_alarm, 4),
                     "style_recall": round(style_recall, 4)}
    return out


def train(out_dir: Path, ckpt_dir: Path, root: Path, steps: int = STEPS, resume: bool = False,
          progress: bool = True) -> dict:
    from bench.miniworld.checkpoint import load_checkpoint, save_checkpoint
    from bench.miniworld.degrade import load_pipeline_vae, vae_roundtrip
    from detectors.cnn_judge import build_judge, save_judge, to_judge_input
    t0 = time.time()
    out_dir, ckpt_dir, root = Path(out_dir), Path(ckpt_dir), Path(root)
    objects, styles = judge_classes()
    samples = judge_samples("judge-train", N_PER_CONCEPT_STYLE, N_NOTHING_PER_STYLE, N_SCENES)
    images, targets, style_idx, boxes = _arrays(samples, objects, styles)
    vae = load_pipeline_vae(root)
    cache = ckpt_dir / f"judge_vae_n{len(images)}_s{SEED}.npy"
    vae_images = _cached(cache, lambda: vae_roundtrip(vae, images))
    torch.manual_seed(SEED)
    net = build_judge(objects, styles)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    ckpt = ckpt_dir / "judge.pt"
    start = load_checkpoint(ckpt, model=net, optim=opt) if resume and ckpt.is_file() else 0
    bce, ce = torch.nn.BCEWithLogitsLoss(reduction="none"), torch.nn.CrossEntropyLoss()
    net.train()
    history = []
    for step in tqdm(range(start, steps), desc="judge", disable=not progress, mininterval=5,
                     initial=start, total=steps):
        rng = np.random.default_rng(mw.stable_seed("judge-batch", SEED, step))
        idx = rng.integers(0, len(images), size=BATCH)
        x = to_judge_input(augment(images, vae_images, boxes, idx, rng))
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps)
        o, s = net(x)
        # summed over the objects: a mean over 16 classes weighs them below the one style answer
        # and leaves the object head at its prior
        loss = bce(o, torch.from_numpy(targets[idx])).sum(dim=1).mean() + ce(s, torch.from_numpy(style_idx[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            history.append({"step": step, "loss": round(loss.item(), 4)})
        if (step + 1) % CHECKPOINT_EVERY == 0 and step + 1 < steps:
            save_checkpoint(ckpt, step + 1, model=net, optim=opt)
    net.eval()
    val = validation(net, vae, objects, styles)
    meta = {"trained_on": "judge-train renders: clean, through the pipeline VAE, degraded",
            "steps": steps, "seed": SEED}
    files = save_judge(net, out_dir, objects, styles, meta=meta)
    metrics = {"stage": "judge", "steps": steps, "batch": BATCH, "lr": LR, "n_train": len(images),
               "parameters": sum(p.numel() for p in net.parameters()), "validation": val,
               "seconds": round(time.time() - t0, 1), "device": "cpu",
               "file_bytes": {Path(f).name: Path(f).stat().st_size for f in files}, "history": history}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    ckpt.unlink(missing_ok=True)  # the run is complete: nothing to resume, and no pickle beside the weights
    return metrics
