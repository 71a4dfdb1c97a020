"""Stage 1: train the mini CLIP contrastively on rendered image-caption pairs.

    eraselab miniworld train clip [--resume] [--steps N]

Recipe: 4,000 steps over 40k fixed renders (30% styled, 3% "nothing" distractors), captions re-drawn from
each image's attributes at every use, batch 128, AdamW (lr 5e-4, betas 0.9/0.98, wd 0.1 on
matrices), 200 warm-up steps then cosine decay. Every 250 steps: zero-shot top-1 over the
labels on a held-out validation render set (seeds never used for training or the model card),
and a checkpoint. Writes clip/model.safetensors (fp16), clip/open_clip_config.json and
clip/metrics.json.
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
from bench.miniworld.checkpoint import load_checkpoint, save_checkpoint
from bench.miniworld.clip_model import (CLIP_CONFIG, build_clip, images_to_tensor, save_clip,
                                        tokenize, zero_shot_predict)
from bench.miniworld.data import TRAINING_MIX, batch_indices, render_dataset
from bench.miniworld.schedule import warmup_cosine

SEED = 0
STEPS = 4000
BATCH = 128
LR = 5e-4
WARMUP = 200
EVAL_EVERY = 250
N_TRAIN = 40_000
# The shipped clip/ weights did not run one schedule end to end; SCHEDULE_NOTE says how they
# did and goes into clip/metrics.json (the model card's training record; CHANGELOG.md has the
# story). Validation uses the harness's own zero-shot prompts
# (detectors.zero_shot.zero_shot_prompts). A from-scratch rerun uses the 4,000-step schedule
# throughout, so it differs slightly from the shipped weights.
SCHEDULE_NOTE = ("steps 1-1500 under a 2500-step cosine schedule, 1501-4000 under the 4000-step "
                 "schedule; val zero-shot before step 1500 used the earlier label prompts")


def clip_labels() -> list[str]:
    return list(mw.OBJECTS) + list(mw.INSTANCES) + [mw.NOTHING]


def eval_style(label: str, i: int) -> str:
    """The style of the i-th evaluation render of a label: the training mix (70% plain, the
    rest spread over the four styles), so the number describes the world's own distribution."""
    if label == mw.NOTHING or i % 10 < 7:
        return "plain"
    return mw.STYLES[1 + i % (len(mw.STYLES) - 1)]


def validation_set(n_per_label: int = 20):
    """Held-out renders (seed namespace 'clip-val') in the training style mix: images, labels, styles."""
    images, labels, styles = [], [], []
    for label in clip_labels():
        for i in range(n_per_label):
            style = eval_style(label, i)
            sample = mw.render(label, style, mw.stable_seed("clip-val", label, i))
            images.append(sample.image)
            labels.append(label)
            styles.append(style)
    return np.stack(images), labels, styles


def train(out_dir: Path, ckpt_dir: Path, root: Path | None = None, steps: int = STEPS, resume: bool = False,
          progress: bool = True, n_train: int = N_TRAIN, batch: int = BATCH,
          config: dict = CLIP_CONFIG) -> dict:
    import open_clip
    torch.manual_seed(SEED)
    model = build_clip(config)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.98), eps=1e-6)
    ckpt = Path(ckpt_dir) / "clip.pt"
    history_path = Path(ckpt_dir) / "clip_history.json"
    start, history = 0, []
    if resume and ckpt.is_file():
        start = load_checkpoint(ckpt, model=model, opt=opt)
        history = json.loads(history_path.read_text()) if history_path.is_file() else []
    data = render_dataset(n_train, SEED, cache_dir=ckpt_dir, progress=progress,
                          **TRAINING_MIX)
    val_images, val_labels, _ = validation_set()
    loss_fn = open_clip.ClipLoss()
    labels = clip_labels()
    t0 = time.time()
    model.train()
    bar = tqdm(range(start, steps), desc="clip", initial=start, total=steps, disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, steps, LR, WARMUP, floor=0.1)
        idx = batch_indices(len(data), batch, "clip", step, SEED)
        images = images_to_tensor(torch.from_numpy(data.images[idx]))
        flip = torch.from_numpy(np.random.default_rng(mw.stable_seed("flip", step)).random(batch) < 0.5)
        images[flip] = images[flip].flip(-1)
        texts = tokenize(data.captions(idx, seed=step))
        out = model(images, texts)
        loss = loss_fn(out[0], out[1], out[2])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP's clamp of the learned temperature
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % EVAL_EVERY == 0 or step + 1 == steps:
            model.eval()
            predicted = zero_shot_predict(model, val_images, labels)
            acc = float(np.mean([p == t for p, t in zip(predicted, val_labels)]))
            model.train()
            history.append({"step": step + 1, "loss": round(loss.item(), 4), "val_zero_shot": acc,
                            "seconds": round(time.time() - t0, 1)})
            tqdm.write(f"clip step {step + 1}: loss {loss.item():.3f} val zero-shot {acc:.3f}")
            save_checkpoint(ckpt, step + 1, model=model, opt=opt)
            history_path.write_text(json.dumps(history, indent=1))
    model.eval()
    files = save_clip(model, out_dir, config)
    metrics = {"stage": "clip", "steps": steps, "batch": batch, "lr": LR, "seed": SEED,
               "n_train_renders": n_train, "parameters": sum(p.numel() for p in model.parameters()),
               "config": config, "history": history,
               "val_zero_shot": history[-1]["val_zero_shot"] if history else None,
               "train_seconds_this_run": round(time.time() - t0, 1),
               "file_bytes": {f.name: f.stat().st_size for f in files},
               "history_note": SCHEDULE_NOTE}
    (Path(out_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
