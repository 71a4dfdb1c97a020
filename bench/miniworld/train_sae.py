"""Stage 7: train the k-sparse autoencoder that concept-steerers steers the mini text encoder with.

    eraselab miniworld train sae [--steps N]

What it learns: the residual stream of the shipped mini SD's text encoder (pipeline/) after
encoder layer 2 (0-indexed), the mini analogue of the authors' ViT-L/14 ``layers.9``: that layer
leaves 10 of 12 blocks behind it (depth 0.83); of the mini encoder's 4 blocks, layer 2 leaves 3
(0.75) and the last layer all 4 (1.0, next to the final layer norm), so layer 2 is the nearest.
Data: every position (start, words, end and padding, as the authors train on all 77) of the
mini world's training captions, ``render.random_sample`` in seed namespace 'sae-train' (the
renderer's caption grammar, which no evaluation template reproduces verbatim); held out:
namespace 'sae-val', less any caption also drawn for training.

The SAE (methods/ksae.py) follows the authors' recipe scaled to the width: expansion 4 (128 ->
512 latents), k = 8 (their k = 32 of 768 scales to 5.3; 8 is the next power of two, so a token
still gets a handful of latents), aux-k 8 (aux-k = k, as theirs) at coefficient 1/32, Adam lr
4e-4 (eps 6.25e-10), constant lr, decoder columns kept at unit norm, b_pre started at the data
mean. Batches of 1,024 tokens, not the authors' 4,096: 1,500 steps then see 1.5M tokens (12
passes over the 128k training tokens) in a few CPU minutes, with more updates per token than
fewer, larger batches would give. A latent counts dead after 40,000 tokens without firing (the
authors' 10M of their 400M tokens, 2.5%, of this run's 1.5M). Seeded, deterministic on one
thread count.

Writes sae/sae.safetensors (no pickle) and sae/metrics.json: config, seed, data, a loss curve
summary, the fraction of variance explained (FVE) on training and held-out tokens and the share
of dead latents, and the bar the held-out FVE must meet (FVE_BAR, fixed before training).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.core.errors import EraselabError
from bench.miniworld import render as mw

SEED = 0
LAYER = 2
EXPANSION = 4
K = 8
AUXK = 8
AUXK_COEF = 1 / 32
LR = 4e-4
ADAM_EPS = 6.25e-10
BATCH_TOKENS = 1024
STEPS = 1500
DEAD_TOKENS = 40_000
FIRED = 1e-3                 # a latent fires when its top-k value exceeds this
N_TRAIN_RENDERS = 1000
N_VAL_RENDERS = 150
CAPTIONS_PER_RENDER = 4
FVE_BAR = 0.80               # held-out fraction of variance explained the shipped SAE must reach
LOG_EVERY = 50


def captions(namespace: str, renders: int, per_render: int = CAPTIONS_PER_RENDER) -> list[str]:
    """``per_render`` captions of each of ``renders`` training samples (render.random_sample's
    mix, seeded by namespace), each drawn from the sample's own attributes as the training
    stages re-caption their renders (bench/miniworld/data.py)."""
    out = []
    for i in range(renders):
        sample = mw.random_sample(mw.stable_seed(namespace, i))
        for j in range(per_render):
            rng = np.random.default_rng(mw.stable_seed(namespace, "caption", i, j))
            out.append(mw.caption_for(sample.concept, sample.style, sample.attributes, rng))
    return out


def held_out_captions(renders: int = N_VAL_RENDERS, namespace: str = "sae-val",
                      training: list[str] | None = None) -> list[str]:
    """Captions from ``namespace`` that the training draw (``training``, drawn here if None) does
    not contain verbatim."""
    seen = set(captions("sae-train", N_TRAIN_RENDERS) if training is None else training)
    return [c for c in captions(namespace, renders) if c not in seen]


@torch.no_grad()
def activations(pipe, texts: list[str], layer: int = LAYER, batch: int = 256) -> torch.Tensor:
    """The layer's outputs for ``texts`` at every position: (len(texts), L, d) float32."""
    from methods.common import tokenize
    from methods.ksae import layer_outputs
    return torch.cat([layer_outputs(pipe.text_encoder, tokenize(pipe, texts[i:i + batch]), layer).cpu()
                      for i in range(0, len(texts), batch)])


def fit(tokens: torch.Tensor, steps: int = STEPS, seed: int = SEED, k: int = K, auxk: int = AUXK,
        expansion: int = EXPANSION, lr: float = LR, batch_tokens: int = BATCH_TOKENS,
        dead_tokens: int = DEAD_TOKENS, progress: bool = True):
    """Train a k-SAE on ``tokens`` (N, d); returns (sae, history). Every random draw (init, batch
    order) comes from one generator seeded by ``seed``."""
    from methods.ksae import KSparseAutoencoder

    generator = torch.Generator().manual_seed(seed)
    n, d = tokens.shape
    sae = KSparseAutoencoder(d, expansion * d, k, auxk, generator=generator)
    with torch.no_grad():
        sae.pre_bias.copy_(tokens.mean(0))
    variance = float(((tokens - tokens.mean(0)) ** 2).mean())
    optimiser = torch.optim.Adam(sae.parameters(), lr=lr, eps=ADAM_EPS)
    batch = min(batch_tokens, n)
    dead_steps = max(1, dead_tokens // batch)
    since_fired = torch.zeros(sae.n_latents, dtype=torch.long)
    order, cursor = torch.randperm(n, generator=generator), 0
    history, window = [], []
    for step in tqdm(range(steps), desc="sae", disable=not progress, mininterval=2):
        if cursor + batch > n:  # a fresh permutation per pass over the tokens
            order, cursor = torch.randperm(n, generator=generator), 0
        x = tokens[order[cursor:cursor + batch]]
        cursor += batch
        dead = since_fired > dead_steps
        loss, mse, aux, values, indices = sae.losses(x, dead, variance, AUXK_COEF)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise EraselabError(f"sae: loss became {value} at step {step + 1}/{steps} (lr={lr}); lower the lr")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        sae.project_decoder_grad()
        optimiser.step()
        sae.normalise_decoder()
        with torch.no_grad():
            fired = torch.zeros(sae.n_latents, dtype=torch.bool)
            fired[indices[values > FIRED]] = True
            since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + 1)
        window.append((value, float(mse.detach()), float(aux.detach())))
        if (step + 1) % LOG_EVERY == 0 or step + 1 == steps:
            mean = np.mean(window, axis=0)
            history.append({"step": step + 1, "loss_avg": round(float(mean[0]), 5),
                            "mse_avg": round(float(mean[1]), 5), "auxk_avg": round(float(mean[2]), 5),
                            "dead_share": round(float(dead.float().mean()), 4)})
            window = []
    return sae.eval(), history


@torch.no_grad()
def reconstruction(sae, tokens: torch.Tensor) -> dict:
    """FVE (1 - sum |x - x_hat|^2 / sum |x - mean|^2), mean non-zero latents per token, and the
    share of latents that never fire on ``tokens`` (N, d)."""
    z = torch.cat([sae.encode(tokens[i:i + 8192]) for i in range(0, len(tokens), 8192)])
    recon = sae.decode(z)
    fve = 1 - float(((tokens - recon) ** 2).sum() / ((tokens - tokens.mean(0)) ** 2).sum())
    return {"fve": round(fve, 4), "l0": round(float((z > 0).sum(1).float().mean()), 2),
            "dead_share": round(float(((z > 0).sum(0) == 0).float().mean()), 4)}


def prompt_positions(pipe, texts: list[str]) -> torch.Tensor:
    """A (len(texts), L) mask of the positions from the first word to the end token (no start
    token, no padding): the positions that differ between captions."""
    from methods.common import tokenize
    ids = tokenize(pipe, texts).cpu()
    eos = pipe.tokenizer.eos_token_id
    end = (ids == eos).int().argmax(1)
    positions = torch.arange(ids.shape[1])[None]
    return (positions >= 1) & (positions <= end[:, None])


def train(out_dir: Path, ckpt_dir: Path, root: Path, steps: int | None = None, resume: bool = False,
          progress: bool = True) -> dict:
    """The stage (``resume`` is taken for the stage interface: a run takes about a minute and
    always starts from the seed)."""
    from bench.miniworld.weights import verified_dir
    from bench.pipeline_io import load_pipeline
    t0 = time.time()
    steps = STEPS if steps is None else steps
    pipe = load_pipeline(str(verified_dir("pipeline", Path(root))), progress=False)
    train_texts = captions("sae-train", N_TRAIN_RENDERS)
    val_texts = held_out_captions(training=train_texts)
    train_acts, val_acts = activations(pipe, train_texts), activations(pipe, val_texts)
    d = train_acts.shape[-1]
    t1 = time.time()
    sae, history = fit(train_acts.reshape(-1, d), steps=steps, progress=progress)
    train_seconds = time.time() - t1
    out_dir = Path(out_dir)
    path = sae.save(out_dir / "sae.safetensors", {"layer": LAYER, "d_in": d, "n_latents": sae.n_latents,
                                                  "source": "eraselab miniworld train sae"})
    val_mask = prompt_positions(pipe, val_texts)
    train_quality = reconstruction(sae, train_acts.reshape(-1, d))
    val_quality = reconstruction(sae, val_acts.reshape(-1, d))
    losses = [h["loss_avg"] for h in history]
    train_tokens, val_tokens = train_acts.shape[0] * train_acts.shape[1], val_acts.shape[0] * val_acts.shape[1]
    metrics = {
        "stage": "sae", "seed": SEED, "layer": LAYER,
        "layer_rule": "ViT-L/14 layers.9 leaves 10 of 12 blocks behind (0.83); mini layers.2 leaves 3 "
                      "of 4 (0.75), the nearest",
        "config": {"d_in": d, "n_latents": sae.n_latents, "expansion": EXPANSION, "k": K, "auxk": AUXK,
                   "auxk_coef": AUXK_COEF, "lr": LR, "adam_eps": ADAM_EPS, "batch_tokens": BATCH_TOKENS,
                   "dead_tokens": DEAD_TOKENS, "pre_bias_init": "mean of the training tokens"},
        "data": {"train_namespace": "sae-train", "train_renders": N_TRAIN_RENDERS,
                 "captions_per_render": CAPTIONS_PER_RENDER, "train_captions": len(train_texts),
                 "unique_train_captions": len(set(train_texts)), "train_tokens": train_tokens,
                 "tokens_per_caption": int(train_acts.shape[1]), "val_namespace": "sae-val",
                 "val_renders": N_VAL_RENDERS, "val_captions": len(val_texts), "val_tokens": val_tokens,
                 "positions": "every position (start, words, end, padding)"},
        "steps": steps, "tokens_seen": steps * min(BATCH_TOKENS, train_tokens),
        "parameters": sum(p.numel() for p in sae.parameters()),
        "loss_curve": {"first": losses[0], "last": losses[-1], "min": min(losses),
                       "final_mse": history[-1]["mse_avg"], "final_auxk": history[-1]["auxk_avg"]},
        "train": train_quality, "val": val_quality,
        "val_caption_positions": reconstruction(sae, val_acts[val_mask]),
        "fve_bar": FVE_BAR, "bar_met": val_quality["fve"] >= FVE_BAR,
        "train_seconds": round(train_seconds, 1), "seconds": round(time.time() - t0, 1),
        "device": "cpu", "threads": torch.get_num_threads(),
        "file_bytes": {path.name: path.stat().st_size},
        "history": history,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
