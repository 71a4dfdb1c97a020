"""Stage 3: train the mini Stable Diffusion UNet and assemble the pipeline folder.

    eraselab miniworld train unet --device cuda [--resume] [--steps N]   # the from-scratch recipe
    eraselab miniworld train unet --init-from datasets/miniworld/v1/pipeline/unet --focus F.json

Needs the clip/ and vae/ stages. The mini CLIP's text tower is converted to a transformers
CLIPTextModel (bench/miniworld/convert.py) and frozen, as SD 1.x freezes CLIP ViT-L/14. The
UNet learns epsilon-prediction on VAE latents (16x16x4) of the 40k training renders under SD's
DDPM schedule (1000 steps, scaled-linear betas 0.00085..0.012), with fresh captions every step
and 10% of captions dropped to "" for classifier-free guidance; half of each batch is the
latents of the renders' mirror images (encoded from pixels, see ``views_moments``). From
scratch: AdamW lr 8e-4 (500 warm-up steps, cosine to 10%), batch 256, 2,900 steps, EMA 0.999
(the EMA weights are shipped), the "wide" UNet (12.6M parameters): 7.4 minutes on a lent H200
(0.15 s/step, shared with two other runs; benchmarks/results/gpu_round/), many hours on 2 CPU
cores. The wide UNet is the one kept because on the selection split it reaches 91% where the
small one (3.2M) stays near 70% (benchmarks/results/mini_sd_selection_gpu_*.json). The shipped
UNet is a 2,900-step wide GPU run fine-tuned with ``--init-from`` for 2,100 CPU steps at batch
64 on this stage's mirror-image data, pixel art drawn 5x and sketch and neon 2x
(benchmarks/results/unet_cpu_mirror_run.json: pixel art 53% -> 75% on the selection split; the
GPU run itself mirrored latents, see CHANGELOG.md); the model card's training record lists both
rounds.
Checkpoints every 200 steps; ``--resume`` continues bit-for-bit (batches, noise and dropout derive
from the step).
``--size {small,medium,wide}`` picks the UNet's width (wide is the shipped one's), ``--lr`` the
peak learning rate, ``--batch`` the batch size, and ``--time-budget SECONDS`` fixes the number of
steps from the speed of the first steps (bench/miniworld/budget.py; the chosen count is recorded,
and re-running with ``--steps`` that count reproduces the run). ``--device cuda`` trains on a
GPU: batches, noise and dropout are still drawn on the CPU from the same seeds, so only
floating-point rounding differs from a CPU run (the device is recorded).
``--init-from UNET_DIR`` fine-tunes trained weights with a fresh optimiser and a gentler
schedule (peak lr 2e-4, 100 warm-up steps, cosine to 10%); the base's own metrics are kept in
the new metrics.json. ``--focus FILE`` (a JSON with ``focus_weights``: concept or style name ->
weight, as benchmarks/mini_sd_selection.py writes from the selection split) draws each training
image with probability proportional to its concept's weight times its style's, so concepts the
model renders badly are seen more often; without it batches are uniform over the renders.
Writes pipeline/ (a StableDiffusionPipeline folder, fp16 safetensors, DDIM scheduler, no
safety checker) and pipeline/metrics.json.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.miniworld import render as mw
from bench.miniworld.budget import StepBudget, refuse_with_resume
from bench.miniworld.checkpoint import load_checkpoint, save_checkpoint
from bench.miniworld.device import device_name, to_device
from bench.miniworld.data import (TRAINING_MIX, batch_indices, image_weights, render_cache_key,
                                  render_dataset, save_npy, weighted_batch_indices)
from bench.miniworld.schedule import warmup_cosine
from bench.miniworld.weights import strip_local_paths

SEED = 2
STEPS = 2_900
BATCH = 256
LR = 8e-4
WARMUP = 500
FINETUNE_LR, FINETUNE_WARMUP = 2e-4, 100   # with --init-from
EMA_DECAY = 0.999
CFG_DROPOUT = 0.1
CHECKPOINT_EVERY = 200
N_TRAIN = 40_000
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear")
UNET_CONFIG = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                   block_out_channels=(64, 128, 256),
                   down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                   cross_attention_dim=128, attention_head_dim=8, norm_num_groups=32)
# Widths of the three resolution levels (--size): parameters grow with the square of the width,
# CPU sampling time roughly linearly (small 3.2M, medium 7.2M, wide 12.8M parameters).
UNET_WIDTHS = {"small": (32, 64, 128), "medium": (32, 96, 192), "wide": (64, 128, 256)}


def unet_config_for(size: str) -> dict:
    return {**UNET_CONFIG, "block_out_channels": UNET_WIDTHS[size]}


def build_unet(cross_attention_dim: int, config: dict = UNET_CONFIG):
    from diffusers import UNet2DConditionModel
    torch.manual_seed(SEED)
    return UNet2DConditionModel(**{**config, "cross_attention_dim": cross_attention_dim})


def frozen_text_side(root: Path, tokenizer_dir: Path):
    """The converted, frozen text encoder and its tokenizer (written into the pipeline folder)."""
    from bench.miniworld.clip_model import load_clip
    from bench.miniworld.convert import build_clip_tokenizer, openclip_to_text_model
    clip_dir = Path(root) / "clip"
    clip = load_clip(clip_dir)
    config = json.loads((clip_dir / "open_clip_config.json").read_text())
    text_encoder = openclip_to_text_model(clip, config).requires_grad_(False).eval()
    tokenizer = build_clip_tokenizer(tokenizer_dir, config["text_cfg"]["context_length"])
    return text_encoder, tokenizer


@torch.no_grad()
def encode_captions(text_encoder, tokenizer, captions: list[str]) -> torch.Tensor:
    # Exactly what StableDiffusionPipeline.encode_prompt computes (no attention mask).
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    return text_encoder(to_device(ids, text_encoder.device))[0]


@torch.no_grad()
def latent_moments(vae, images: np.ndarray, cache: Path, progress: bool,
                   mirrored: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every training render (``mirrored``: of its left-right mirror
    image, flipped in pixel space before encoding), computed once and cached as .npy."""
    kind = ".mirror" if mirrored else ""
    mean_path, std_path = cache.with_suffix(f"{kind}.mean.npy"), cache.with_suffix(f"{kind}.std.npy")
    if mean_path.is_file() and std_path.is_file():
        return torch.from_numpy(np.load(mean_path)), torch.from_numpy(np.load(std_path))
    from bench.miniworld.train_vae import to_vae_input
    means, stds = [], []
    for start in tqdm(range(0, len(images), 256), desc=f"encode latents{kind.replace('.', ' ')}",
                      disable=not progress):
        part = images[start:start + 256]
        post = vae.encode(to_vae_input(np.ascontiguousarray(part[:, :, ::-1]) if mirrored else part)
                          .to(vae.device)).latent_dist
        means.append(post.mean.cpu())
        stds.append(post.std.cpu())
    mean, std = torch.cat(means), torch.cat(stds)
    save_npy(mean_path, mean.numpy())
    save_npy(std_path, std.numpy())
    return mean, std


def views_moments(vae, images: np.ndarray, cache: Path, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, N, C, h, w) posterior means and stds: [0] the renders, [1] their mirror images.

    Why not flip the latent instead: the encoder is not flip-equivariant, and a flipped latent
    decodes to another picture. For pixel art (4x4 blocks on the latent grid) the flipped
    latents of the selection split decoded to recognisable pixel art 27% of the time against 85%
    unflipped (n=48, the shipped VAE: benchmarks/results/style_diagnosis_pixel_art_mirror.json),
    so a UNet trained on flipped latents half the time learns blurred blocks too."""
    plain = latent_moments(vae, images, cache, progress)
    mirror = latent_moments(vae, images, cache, progress, mirrored=True)
    return torch.stack([plain[0], mirror[0]]), torch.stack([plain[1], mirror[1]])


def latents_cache_path(ckpt_dir: Path, n_train: int, vae) -> Path:
    """Where the posterior moments of the training renders are cached.

    They depend on the renders and on the encoder side of the VAE only (encoder + quant_conv):
    the decoder stage retrains the decoder and must find the same cache as the UNet stage."""
    import hashlib
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        if name.startswith(("encoder.", "quant_conv.")):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
    key = render_cache_key(n_train, 0, **TRAINING_MIX)
    return Path(ckpt_dir) / f"latents_{key}_enc{digest.hexdigest()[:10]}"


def read_focus(path: Path) -> dict[str, float]:
    """The ``focus_weights`` of a JSON file: known concept/style names -> positive weights."""
    from bench.core.errors import EraselabError
    path = Path(path)
    try:
        weights = json.loads(path.read_text())["focus_weights"]
    except OSError as exc:
        raise EraselabError(f"--focus {path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, KeyError, TypeError):
        raise EraselabError(f"--focus {path}: expected a JSON object with a 'focus_weights' mapping") from None
    known = set(mw.OBJECTS) | set(mw.INSTANCES) | set(mw.STYLES[1:])
    if not isinstance(weights, dict):
        raise EraselabError(f"--focus {path}: 'focus_weights' must map names to numbers")
    for name, weight in weights.items():
        if name not in known:
            raise EraselabError(f"--focus {path}: focus_weights.{name}: not a mini-world concept or style")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight > 0:
            raise EraselabError(f"--focus {path}: focus_weights.{name}: expected a positive number, got {weight!r}")
    return {k: float(v) for k, v in weights.items()}


def warm_start(unet, ema, folder: Path) -> None:
    """Load a trained UNet (a diffusers unet/ folder, e.g. the shipped pipeline/unet) into both the
    trained copy and its EMA: how a machine without the checkpoints/ folder continues training."""
    from diffusers import UNet2DConditionModel
    from bench.core.errors import EraselabError
    try:
        source = UNet2DConditionModel.from_pretrained(str(folder), torch_dtype=torch.float32)
        state = source.state_dict()
        unet.load_state_dict(state, strict=True)
        ema.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EraselabError(f"--init-from {folder}: not a UNet of this stage's shape ({first_line})") from None


def train(out_dir: Path, ckpt_dir: Path, root: Path, steps: int = STEPS, resume: bool = False,
          progress: bool = True, n_train: int = N_TRAIN, batch: int = BATCH,
          unet_config: dict = UNET_CONFIG, init_from: Path | None = None, device: str = "cpu",
          focus: dict[str, float] | None = None, size: str | None = None, lr: float | None = None,
          time_budget: float | None = None) -> dict:
    """Train (or continue) the UNet and write the pipeline folder.

    ``size`` picks a width from UNET_WIDTHS instead of ``unet_config``; ``lr`` replaces the peak
    learning rate. ``time_budget`` (seconds of training loop) fixes ``steps`` after the budget's
    timed steps, rounded down to a hundred: the schedule's warm-up does not depend on the length,
    so the run equals one started with that ``--steps`` (recorded in the metrics)."""
    from diffusers import AutoencoderKL, DDPMScheduler
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    refuse_with_resume(time_budget, resume)
    if size is not None:
        unet_config = unet_config_for(size)
    dev = torch.device(device)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    # The tokenizer is built beside the checkpoints: out_dir only ever holds a finished pipeline.
    text_encoder, tokenizer = frozen_text_side(root, ckpt_dir / "tokenizer")
    text_encoder.to(dev)
    vae = AutoencoderKL.from_pretrained(str(Path(root) / "vae"), torch_dtype=torch.float32).eval().to(dev)
    scaling = vae.config.scaling_factor
    unet = build_unet(text_encoder.config.hidden_size, unet_config).to(dev)  # before the optimiser
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=LR, weight_decay=1e-2)
    ckpt = ckpt_dir / "unet.pt"
    history_path = ckpt_dir / "unet_history.json"
    start, history = 0, []
    if resume and ckpt.is_file():
        start = load_checkpoint(ckpt, unet=unet, ema=ema, opt=opt)
        history = json.loads(history_path.read_text()) if history_path.is_file() else []
    elif init_from is not None:  # a fresh optimiser and schedule from trained weights
        warm_start(unet, ema, Path(init_from))
    data = render_dataset(n_train, 0, cache_dir=ckpt_dir, progress=progress, **TRAINING_MIX)
    sampling = image_weights(data.records, focus) if focus else None
    peak, warmup = (FINETUNE_LR, FINETUNE_WARMUP) if init_from is not None else (LR, WARMUP)
    peak = lr if lr is not None else peak
    base_metrics = _base_metrics(init_from)  # read now: out_dir may be the folder it came from
    lat_mean, lat_std = views_moments(vae, data.images, latents_cache_path(ckpt_dir, n_train, vae), progress)
    noise_scheduler = DDPMScheduler(**SCHEDULE)
    # History seconds are cumulative over resumed runs (a resumed run starts from the last entry).
    t0 = time.time() - (history[-1]["seconds"] if history else 0.0)
    unet.train()
    losses, pending = [], []
    bar = tqdm(desc="unet", initial=start, total=steps, disable=not progress)
    step = start
    budget = StepBudget(time_budget, start)
    while step < steps:
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, steps, peak, warmup, floor=0.1)
        idx = torch.from_numpy(batch_indices(len(data), batch, "unet", step, SEED) if sampling is None
                               else weighted_batch_indices(sampling, batch, "unet-focus", step, SEED))
        gen = torch.Generator().manual_seed(mw.stable_seed("unet-noise", SEED, step))
        eps_latent = torch.randn((len(idx), *lat_mean.shape[2:]), generator=gen)
        # Renders are left-right symmetric in meaning: half the batch is the mirror images' latents.
        mirror = (torch.rand(batch, generator=gen) < 0.5).long()
        latents = (lat_mean[mirror, idx] + lat_std[mirror, idx] * eps_latent) * scaling
        noise = torch.randn(latents.shape, generator=gen)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=gen)
        # Everything random is drawn above on the CPU: a GPU run sees the same batches and noise.
        latents, noise, timesteps = (to_device(t, dev) for t in (latents, noise, timesteps))
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        captions = data.captions(idx.tolist(), seed=step)
        drop = (torch.rand(batch, generator=gen) < CFG_DROPOUT).tolist()
        captions = ["" if d else c for c, d in zip(captions, drop)]
        cond = encode_captions(text_encoder, tokenizer, captions)
        pred = unet(noisy, timesteps, encoder_hidden_states=cond).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(EMA_DECAY, (1 + step) / (10 + step))  # warm-up of the EMA
            torch._foreach_lerp_(list(ema.parameters()), list(unet.parameters()), 1 - decay)
        # Losses are read back every 50 steps, not every step: a read waits for the GPU.
        pending.append(loss.detach())
        step += 1
        bar.update(1)
        steps = bar.total = budget.steps_after(step, steps)
        if len(pending) == 50 or step == steps or step % CHECKPOINT_EVERY == 0:
            losses.extend(torch.stack(pending).cpu().tolist())
            pending = []
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if step % CHECKPOINT_EVERY == 0 or step == steps:
            history.append({"step": step, "loss_avg50": round(float(np.mean(losses[-50:])), 5),
                            "seconds": round(time.time() - t0, 1)})
            save_checkpoint(ckpt, step, unet=unet, ema=ema, opt=opt)
            history_path.write_text(json.dumps(history, indent=1))
    bar.close()
    cpu = torch.device("cpu")
    # The pipeline takes vae/ as it is now: the decoder stage may have refined the decoder while
    # this stage ran. Its encoder side must still be the one these latents came from.
    final_vae = AutoencoderKL.from_pretrained(str(Path(root) / "vae"), torch_dtype=torch.float32).eval()
    if latents_cache_path(ckpt_dir, n_train, final_vae) != latents_cache_path(ckpt_dir, n_train, vae.to(cpu)):
        from bench.core.errors import EraselabError
        raise EraselabError(f"{Path(root) / 'vae'}: its encoder changed while the unet stage ran "
                            "(the UNet learned other latents); nothing written")
    files = assemble_pipeline(out_dir, ema.eval().to(cpu), final_vae, text_encoder.to(cpu), tokenizer)
    metrics = {"stage": "unet", "steps": steps, "size": size,
               "steps_from_time_budget": budget.record, "init_from": str(init_from) if init_from else None,
               "base_metrics": base_metrics, "focus_weights": focus,
               "device": str(dev), "device_name": device_name(dev),
               "batch": batch, "lr": peak, "warmup": warmup, "seed": SEED,
               "ema_decay": EMA_DECAY, "cfg_dropout": CFG_DROPOUT, "schedule": SCHEDULE,
               "unet_config": unet_config, "parameters": sum(p.numel() for p in ema.parameters()),
               "history": history, "train_seconds_total": training_seconds(history),
               "file_bytes": {str(f.relative_to(out_dir)): f.stat().st_size for f in files}}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _base_metrics(init_from: Path | None) -> dict | None:
    """The metrics.json of the pipeline a warm start came from (its unet/ folder's parent)."""
    if init_from is None:
        return None
    path = Path(init_from).parent / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def training_seconds(history: list[dict]) -> float:
    """Wall seconds of all runs in ``history``. Where an entry's seconds fall below the one before
    (a history whose clock restarted at a resume, as in the shipped UNet's first round), each
    segment's last value is added."""
    total, last = 0.0, 0.0
    for entry in history:
        if entry["seconds"] < last:  # a resumed run restarted the clock
            total += last
        last = entry["seconds"]
    return round(total + last, 1)


def sampling_scheduler():
    from diffusers import DDIMScheduler
    return DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def assemble_pipeline(out_dir: Path, unet, vae, text_encoder, tokenizer) -> list[Path]:
    """Save a StableDiffusionPipeline folder (fp16 weights) that from_pretrained loads offline,
    in float32 unless asked otherwise."""
    from diffusers import StableDiffusionPipeline

    from bench.pipeline_io import save_half_pipeline
    pipe = StableDiffusionPipeline(vae=copy.deepcopy(vae), text_encoder=copy.deepcopy(text_encoder),
                                   tokenizer=tokenizer, unet=copy.deepcopy(unet),
                                   scheduler=sampling_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    save_half_pipeline(pipe, out_dir)
    strip_local_paths(out_dir)
    return [p for p in Path(out_dir).rglob("*") if p.is_file()]
