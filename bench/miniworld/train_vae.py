"""Stage 2: train the mini Stable Diffusion's AutoencoderKL (64x64x3 <-> 16x16x4).

    eraselab miniworld train vae [--resume] [--steps N]

Recipe: the same 40k renders as the CLIP stage (different seed namespace), batch 32, AdamW
lr 1e-3 with cosine decay, loss = MSE + 1e-4 * KL. A KL weight ten times the prototype's keeps
the latents closer to centred (SD 1.x has no shift factor). The scaling factor is measured on
data after training: 1 / std of the latents. Writes vae/ (a diffusers folder, fp16) and
vae/metrics.json with held-out PSNR.
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
from bench.miniworld.data import TRAINING_MIX, batch_indices, render_dataset
from bench.miniworld.schedule import warmup_cosine

SEED = 1
STEPS = 2000
BATCH = 32
LR = 1e-3
KL_WEIGHT = 1e-4
N_TRAIN = 40_000
N_VAL = 256   # held-out renders of the PSNR
VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
                  down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3,
                  block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=32)


def to_vae_input(images_uint8: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W) in [-1, 1], the pipeline's image convention."""
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def build_vae():
    from diffusers import AutoencoderKL
    torch.manual_seed(SEED)
    return AutoencoderKL(**VAE_CONFIG)


@torch.no_grad()
def roundtrip(vae, images: np.ndarray) -> torch.Tensor:
    """encode -> posterior mode -> decode, in the VAE's dtype; float (N,3,H,W) in [-1, 1]."""
    x = to_vae_input(images).to(vae.dtype)
    return vae.decode(vae.encode(x).latent_dist.mode()).sample.float().clamp(-1, 1)


def psnr(vae, images: np.ndarray) -> float:
    with torch.no_grad():
        x = to_vae_input(images)
        recon = roundtrip(vae, images)
        mse = ((recon - x) / 2).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def train(out_dir: Path, ckpt_dir: Path, root: Path | None = None, steps: int = STEPS, resume: bool = False,
          progress: bool = True, n_train: int = N_TRAIN) -> dict:
    vae = build_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=LR, weight_decay=0.0)
    ckpt = Path(ckpt_dir) / "vae.pt"
    start = load_checkpoint(ckpt, model=vae, opt=opt) if resume and ckpt.is_file() else 0
    data = render_dataset(n_train, 0, cache_dir=ckpt_dir, progress=progress, **TRAINING_MIX)
    val = np.stack([mw.random_sample(mw.stable_seed("vae-val", i)).image for i in range(N_VAL)])
    t0 = time.time()
    vae.train()
    bar = tqdm(range(start, steps), desc="vae", initial=start, total=steps, disable=not progress)
    for step in bar:
        lr = warmup_cosine(step, steps, LR)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = batch_indices(len(data), BATCH, "vae", step, SEED)
        x = to_vae_input(data.images[idx])
        posterior = vae.encode(x).latent_dist
        gen = torch.Generator().manual_seed(mw.stable_seed("vae-noise", step))
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        mse = torch.nn.functional.mse_loss(recon, x)
        kl = posterior.kl().mean() / z[0].numel()
        loss = mse + KL_WEIGHT * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(mse=f"{mse.item():.4f}", kl=f"{kl.item():.2f}")
        if (step + 1) % 250 == 0:
            save_checkpoint(ckpt, step + 1, model=vae, opt=opt)
    vae.eval()
    # Measure the scaling factor on training renders: SD multiplies latents by it so that the
    # diffusion model sees roughly unit variance.
    with torch.no_grad():
        sample = to_vae_input(data.images[:1024])
        latents = torch.cat([vae.encode(sample[i:i + 256]).latent_dist.mode()
                             for i in range(0, len(sample), 256)])
    scaling = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    held_out_psnr = psnr(vae, val)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    vae.to(torch.float16).save_pretrained(str(out_dir), safe_serialization=True)
    vae.to(torch.float32)
    metrics = {"stage": "vae", "steps": steps, "batch": BATCH, "lr": LR, "kl_weight": KL_WEIGHT,
               "seed": SEED, "parameters": sum(p.numel() for p in vae.parameters()),
               "scaling_factor": scaling, "latent_mean": float(latents.mean()),
               "latent_std": float(latents.std()), "held_out_psnr_db": round(held_out_psnr, 2),
               "train_seconds_this_run": round(time.time() - t0, 1)}
    (Path(out_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
