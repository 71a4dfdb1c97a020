"""Training-loop pieces shared by the erasure methods.

Text encoding (no attention mask, as Stable Diffusion calls its text encoder), few-shot image
latents (resized bicubic to the model's resolution, optional horizontal flip, VAE-encoded once),
noising with the eps or v target, the denoising loss, DDIM sampling from the frozen model (ESD's
z_t, CA's anchor images), freezing all but the trained parameters (which methods/subsets.py
names), and one optimisation loop with NaN/inf checks and progress. All randomness comes from the ``EditContext`` generators, never the global RNG.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from bench.core.errors import EraselabError
from methods.config import learning_rates

# Textual inversion's prompt templates (the 27 object templates and the style templates), which
# the seed paper reuses for its few-shot captions.
IMAGENET_TEMPLATES_SMALL = (
    "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}", "a photo of my {}",
    "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}",
    "a cropped photo of a {}", "a photo of the {}", "a good photo of the {}", "a photo of one {}",
    "a close-up photo of the {}", "a rendition of the {}", "a photo of the clean {}",
    "a rendition of a {}", "a photo of a nice {}", "a good photo of a {}", "a photo of the nice {}",
    "a photo of the small {}", "a photo of the weird {}", "a photo of the large {}",
    "a photo of a cool {}", "a photo of a small {}",
)
IMAGENET_STYLE_TEMPLATES_SMALL = (
    "a painting in the style of {}", "a rendering in the style of {}",
    "a cropped painting in the style of {}", "the painting in the style of {}",
    "a clean painting in the style of {}", "a dirty painting in the style of {}",
    "a dark painting in the style of {}", "a picture in the style of {}",
    "a cool painting in the style of {}", "a close-up painting in the style of {}",
    "a bright painting in the style of {}", "a cropped painting in the style of {}",
    "a good painting in the style of {}", "a close-up painting in the style of {}",
    "a rendition in the style of {}", "a nice painting in the style of {}",
    "a small painting in the style of {}", "a weird painting in the style of {}",
    "a large painting in the style of {}",
)


def fill(template: str, name: str) -> str:
    return template.replace("{}", name)


def training_templates(concept) -> tuple[str, ...]:
    return IMAGENET_STYLE_TEMPLATES_SMALL if concept.is_style else IMAGENET_TEMPLATES_SMALL


# --- text ----------------------------------------------------------------------------------
def tokenize(pipe, prompts: list[str]) -> torch.Tensor:
    tok = pipe.tokenizer
    ids = tok(list(prompts), padding="max_length", max_length=tok.model_max_length,
              truncation=True, return_tensors="pt").input_ids
    return ids.to(pipe.unet.device)


def token_span(prompt_ids: list[int], sub_ids: list[int]) -> list[int]:
    """Positions of the first occurrence of ``sub_ids`` in ``prompt_ids`` (empty if absent)."""
    n = len(sub_ids)
    for i in range(len(prompt_ids) - n + 1):
        if prompt_ids[i:i + n] == sub_ids:
            return list(range(i, i + n))
    return []


def word_positions(pipe, prompt_ids: list[int], word: str) -> list[int]:
    """Positions of ``word``'s tokens in the tokenized prompt ``prompt_ids`` (empty if absent)."""
    return token_span(prompt_ids, pipe.tokenizer(word, add_special_tokens=False).input_ids)


def word_span(pipe, prompt_ids: list[int], word: str, method: str) -> list[int]:
    """``word_positions``, or a one-line error naming ``method`` when the word is not there."""
    positions = word_positions(pipe, prompt_ids, word)
    if not positions:
        raise EraselabError(f"{method}: {word!r} is not a token span of its prompt (truncated?)")
    return positions


def encode_ids(text_encoder, ids: torch.Tensor) -> torch.Tensor:
    # No attention mask: SD conditions on every position, pads included (docs/protocol.md, "The mini world").
    return text_encoder(ids)[0]


def encode_prompts(pipe, prompts: list[str], text_encoder=None) -> torch.Tensor:
    return encode_ids(text_encoder or pipe.text_encoder, tokenize(pipe, prompts))


# --- images and noise --------------------------------------------------------------------
def resolution(pipe) -> int:
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


@torch.no_grad()
def images_to_latents(pipe, images, generator: torch.Generator, rng, hflip_p: float = 0.0):
    """PIL images -> fixed latents: bicubic resize (no crop), flip with p, encode once, scale."""
    import numpy as np
    from PIL import Image

    size = resolution(pipe)
    arrays = []
    for img in images:
        img = img.convert("RGB").resize((size, size), Image.BICUBIC)
        if hflip_p > 0 and rng.random() < hflip_p:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        arrays.append(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    vae = pipe.vae
    pixels = pixels.to(device=vae.device, dtype=vae.dtype)
    dist = vae.encode(pixels).latent_dist
    return dist.sample(generator=generator) * vae.config.scaling_factor


def randn(shape, generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device=like.device, dtype=like.dtype)


def random_timesteps(scheduler, n: int, generator, device) -> torch.Tensor:
    # t ~ U{0, ..., num_train_timesteps - 1}
    return torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=generator).to(device)


def noise_latents(scheduler, latents, generator, timesteps=None):
    """(z_t, target, t): the target is eps, or the v target for v-prediction models."""
    noise = randn(latents.shape, generator, latents)
    if timesteps is None:
        timesteps = random_timesteps(scheduler, latents.shape[0], generator, latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    return noisy, prediction_target(scheduler, latents, noise, timesteps), timesteps


def prediction_target(scheduler, latents, noise, timesteps):
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise EraselabError(f"unsupported prediction_type {kind!r} (expected epsilon or v_prediction)")


def unet_out(unet, z, t, cond):
    return unet(z, t, encoder_hidden_states=cond).sample


def denoising_loss(unet, noisy, timesteps, cond, target) -> torch.Tensor:
    """The textual-inversion / LDM loss ``|| target - model(z_t, t, c) ||^2`` (mean)."""
    return F.mse_loss(unet_out(unet, noisy, timesteps, cond).float(), target.float())


def training_scheduler(pipe):
    """A private DDIM scheduler on the model's noise schedule (sampling mutates scheduler state).

    DDIM whatever the pipeline samples with: its ``add_noise`` is the forward process every
    DDPM-family scheduler shares, and its deterministic step is the sampler ESD's z_t is defined
    with, so an edit does not depend on the solver a suite generates its images with."""
    from diffusers import DDIMScheduler
    return DDIMScheduler.from_config(pipe.scheduler.config)


# --- sampling with the frozen model ----------------------------------------------------------
@torch.no_grad()
def ddim_sample(unet, scheduler, cond, uncond, n_steps: int, stop_at: int, guidance: float,
                generator, shape):
    """Classifier-free-guided DDIM from noise for ``stop_at`` of ``n_steps`` steps.

    Returns (z, t): the latent after ``stop_at`` steps and the timestep it is at (ESD's z_t)."""
    noise = randn(shape, generator, cond)
    z, t = ddim_sample_batch(unet, scheduler, cond, uncond, n_steps, [stop_at], guidance, noise)
    return z, t[0]


@torch.no_grad()
def ddim_sample_batch(unet, scheduler, cond, uncond, n_steps: int, stops: list[int], guidance: float,
                      noise: torch.Tensor):
    """``ddim_sample`` for many trajectories at once: trajectory i starts from ``noise[i]`` and
    stops after ``stops[i]`` steps. Returns (z [N, ...], t [N]).

    The trajectories run longest first, so the ones still running are always a leading slice of
    the batch; each UNet call evaluates only those (a deterministic DDIM step has no state across
    steps, which is what lets the batch shrink)."""
    scheduler.set_timesteps(n_steps)
    order = sorted(range(len(stops)), key=lambda i: (-stops[i], i))
    running = [stops[i] for i in order]
    z = noise[order] * scheduler.init_noise_sigma
    for step, t in enumerate(scheduler.timesteps[:max(stops, default=0)]):
        m = sum(1 for s in running if s > step)
        zin = scheduler.scale_model_input(torch.cat([z[:m], z[:m]]), t)
        embeds = torch.cat([uncond.expand(m, *uncond.shape[1:]), cond.expand(m, *cond.shape[1:])])
        e_u, e_c = unet_out(unet, zin, t, embeds).chunk(2)
        z[:m] = scheduler.step(e_u + guidance * (e_c - e_u), t, z[:m]).prev_sample
    unsorted = torch.empty_like(z)
    unsorted[order] = z
    t_at = torch.stack([scheduler.timesteps[min(s, n_steps - 1)] for s in stops])
    return unsorted, t_at


@contextmanager
def quiet_progress(pipe):
    """No sampling bars inside a method; the caller's own setting comes back afterwards (a
    pipeline loaded with progress=False stays quiet)."""
    previous = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(disable=True)
    try:
        yield
    finally:
        pipe.set_progress_bar_config(**previous)


@torch.no_grad()
def generate_latents(pipe, prompts: list[str], steps: int, guidance: float, generator):
    """x0 latents (UNet space, i.e. already scaled) generated by the pipeline as it is now."""
    out = []
    with quiet_progress(pipe):
        for prompt in prompts:  # one at a time: the generator stream then fixes each image
            out.append(pipe(prompt, num_inference_steps=steps, guidance_scale=guidance,
                            generator=generator, output_type="latent").images)
    return torch.cat(out)


# --- training only the chosen parameters (chosen with methods/subsets.py) -----------------
def enable_grads(pipe, names: list[str]) -> list[torch.nn.Parameter]:
    """Freeze every tensor of the pipeline except ``names``; returns those parameters in order.

    erase() restores the original requires_grad flags afterwards."""
    from methods.delta import named_tensors

    tensors = named_tensors(pipe)
    for p in tensors.values():
        p.requires_grad_(False)
    params = []
    for n in names:
        tensors[n].requires_grad_(True)
        params.append(tensors[n])
    for comp in ("unet", "text_encoder", "vae"):
        if getattr(pipe, comp, None) is not None:
            getattr(pipe, comp).eval()  # no dropout: training must be deterministic
    return params


def adam(params, config, cls=torch.optim.Adam, **kw):
    kwargs = dict(lr=config.lr)
    for key, arg in (("weight_decay", "weight_decay"), ("adam_eps", "eps")):
        if hasattr(config, key):
            kwargs[arg] = getattr(config, key)
    if hasattr(config, "beta1"):
        kwargs["betas"] = (config.beta1, config.beta2)
    kwargs.update(kw)
    return cls(params, **kwargs)


def optimise(ctx, params, optimizer, steps: int, loss_fn, grad_clip: float | None = None,
             grad_mask: dict | None = None, after_step=None, desc: str = "") -> list[float]:
    """Run ``steps`` optimiser steps of ``loss_fn(step) -> loss``; returns the loss history.

    A NaN/inf loss (or an update that makes a parameter non-finite) stops with an EraselabError
    naming the step; erase() then restores the weights."""
    losses = []
    with ctx.progress_bar(steps, desc) as bar:
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(step)
            value = ctx.check_finite(loss, step + 1, steps)
            loss.backward()
            if grad_mask is not None:
                for p in params:
                    if p.grad is not None and id(p) in grad_mask:
                        p.grad.mul_(grad_mask[id(p)])
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            if not all(torch.isfinite(p).all() for p in params):
                raise EraselabError(f"{ctx.method}: weights became non-finite at step "
                                    f"{step + 1}/{steps} ({learning_rates(ctx.config)}); "
                                    f"lower lr or steps")
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}")
            if after_step is not None:
                after_step(step)
    return losses


# --- neighbouring concepts ------------------------------------------------------------------
def generic_word(concept) -> str:
    """The fallback anchor/retain word when the catalog gives no parent or related concept."""
    return "painting" if concept.is_style else "object"


def neighbours(concept) -> list[str]:
    """Concepts to retain or relabel to: catalog ``related``, else the parent, else a generic word."""
    names = list(concept.related) or ([concept.parent] if concept.parent else [])
    return names or [generic_word(concept)]


def retain_set(ctx, n: int, steps: int, guidance: float):
    """(latents, prompts) of ``n`` retain images generated by the model before it is edited."""
    names = neighbours(ctx.concept)
    templates = training_templates(ctx.concept)
    prompts = [fill(templates[i % len(templates)], names[i % len(names)]) for i in range(n)]
    return generate_latents(ctx.pipe, prompts, steps, guidance, ctx.generator), prompts


def concept_set(ctx, n: int, steps: int, guidance: float):
    """(latents, prompts) of ``n`` images of the concept generated by the model before it is
    edited, in training templates (the forget set of methods that generate theirs)."""
    templates = training_templates(ctx.concept)
    prompts = [fill(templates[i % len(templates)], ctx.concept.name) for i in range(n)]
    return generate_latents(ctx.pipe, prompts, steps, guidance, ctx.generator), prompts


def relabelled(prompts: list[str], concept: str, other: str) -> list[str]:
    """``prompts`` with the concept's name replaced by ``other`` (a pseudo label or an anchor)."""
    return [p.replace(concept, other) for p in prompts]


def mapping_loss(unet, noisy, t, cond_from, cond_to) -> torch.Tensor:
    """|| eps(z_t, cond_from) - sg eps(z_t, cond_to) ||^2: the prompt's prediction moved onto
    another prompt's by the same model (CA, SalUn, EraseDiff, ScissorHands)."""
    with torch.no_grad():
        target = unet_out(unet, noisy, t, cond_to)
    return F.mse_loss(unet_out(unet, noisy, t, cond_from).float(), target.float())


def batch_indices(n: int, batch: int, generator) -> list[int]:
    return torch.randint(0, n, (batch,), generator=generator).tolist()
