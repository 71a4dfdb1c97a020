"""fewshot-te: few-shot unlearning of the text encoder (Fuchi & Takagi, BMVC 2024; the seed paper).

Gradient ascent on the textual-inversion denoising loss, through the text encoder only:
``L = - E_{t,eps} || target - eps*(z_t, t, tau_phi(prompt)) ||^2`` with k real images (latents
fixed, encoded once), a random textual-inversion template per sample, t uniform, Adam. The UNet
and VAE are frozen. Variants choose the trained text-encoder parameters:

  all             every text-encoder parameter (what the authors' released runs trained: their
                  freezing code had a ``require_grad`` typo until mid-2026)
  mlp             every ``mlp.fc1``/``mlp.fc2``
  attn            every ``self_attn.{q,k,v,out}_proj``
  mlp+attn        both
  mlp+final-attn  all MLPs plus the last layer's self-attention (the authors' intent; default)
  layers=[i,...]  every parameter of those encoder layers; combine as ``mlp:layers=[0,1]``

    eraselab erase --method fewshot-te --variant all --concept snoopy --seed 0 --out out/snoopy
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import yaml

from bench.errors import EraselabError, quoted
from bench.yamlio import safe_load_text
from methods import METHODS
from methods.base import ErasureMethod
from methods.common import (denoising_loss, enable_grads, encode_ids, fill, images_to_latents,
                            noise_latents, optimise, tokenize, training_scheduler,
                            training_templates)

KINDS = ("all", "mlp", "attn", "mlp+attn", "mlp+final-attn")
_LAYER_PARAM = re.compile(r"(?:^|\.)layers\.(\d+)\.(\w+)\.")


def parse_selection(spec: str) -> tuple[str, tuple[int, ...] | None]:
    """``"mlp:layers=[0,1]"`` -> ("mlp", (0, 1)); ``"layers=[2]"`` -> ("all", (2,))."""
    kind, layers = None, None
    for part in (p.strip() for p in spec.split(":")):
        if part.startswith("layers="):
            try:
                value = safe_load_text(part[len("layers="):])
            except yaml.YAMLError:
                value = None
            if isinstance(value, int) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, list) or not value or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
                raise EraselabError(f"fewshot-te: bad layer list in {quoted(spec)}; write layers=[0,1]")
            layers = tuple(sorted(set(value)))
        elif part in KINDS and kind is None:
            kind = part
        else:
            raise EraselabError(f"fewshot-te: unknown parameter selection {quoted(spec)}; expected one of "
                                f"{', '.join(KINDS)}, layers=[i,...], or KIND:layers=[i,...]")
    return kind or "all", layers


def select_text_encoder(text_encoder, spec: str) -> list[str]:
    """Qualified names (``text_encoder.<param>``) of the parameters variant ``spec`` trains."""
    kind, layers = parse_selection(spec)
    n_layers = text_encoder.config.num_hidden_layers
    if layers and max(layers) >= n_layers:
        raise EraselabError(f"fewshot-te: layer {max(layers)} in {spec!r} does not exist "
                            f"(the text encoder has layers 0..{n_layers - 1})")
    last = n_layers - 1
    out = []
    for name, _ in text_encoder.named_parameters():
        m = _LAYER_PARAM.search(name)
        layer, block = (int(m.group(1)), m.group(2)) if m else (None, None)
        if layers is not None and layer not in layers:
            continue
        keep = {"all": True,
                "mlp": block == "mlp",
                "attn": block == "self_attn",
                "mlp+attn": block in ("mlp", "self_attn"),
                "mlp+final-attn": block == "mlp" or (block == "self_attn" and layer == last)}[kind]
        if keep:
            out.append(f"text_encoder.{name}")
    if not out:
        raise EraselabError(f"fewshot-te: selection {spec!r} matches no text-encoder parameter")
    return out


@dataclass
class FewShotTEConfig:
    lr: float = 1e-5
    steps: int = 8               # optimiser steps: 4 epochs x 4 images / batch 2
    batch_size: int = 2
    k: int = 4                   # few-shot images
    hflip_p: float = 0.5
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-6
    weight_decay: float = 1e-8
    params: str = "mlp+final-attn"
    checkpoint_every_epoch: bool = False  # offer the edit after every epoch (on_checkpoint)

    def check(self):
        if self.lr <= 0 or self.steps < 1 or self.batch_size < 1 or self.k < 1:
            return "lr, steps, batch_size and k must be positive"
        if not 0.0 <= self.hflip_p <= 1.0:
            return "hflip_p must be in [0, 1]"
        parse_selection(self.params)
        return None


def fewshot_objective(unet, text_encoder, scheduler, latents, ids, generator):
    """The seed paper's loss on one batch: the negated denoising loss (gradient ascent)."""
    noisy, target, t = noise_latents(scheduler, latents, generator)
    return -denoising_loss(unet, noisy, t, encode_ids(text_encoder, ids), target)


@METHODS.register("fewshot-te", summary="few-shot gradient ascent on the text encoder (seed paper)")
class FewShotTE(ErasureMethod):
    """Few-shot unlearning of the text encoder (the seed paper)."""

    name = "fewshot-te"
    version = "1"
    Config = FewShotTEConfig
    variants = KINDS + ("layers=[i,...]", "KIND:layers=[i,...]")
    variant_field = "params"
    open_variants = True
    needs_images = True

    def trainable(self, pipe, config):
        return select_text_encoder(pipe.text_encoder, config.params)

    def apply(self, ctx):
        pipe, cfg = ctx.pipe, ctx.config
        latents = images_to_latents(pipe, ctx.images, ctx.generator, ctx.rng, cfg.hflip_p)
        params = enable_grads(pipe, self.trainable(pipe, cfg))
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps,
                               weight_decay=cfg.weight_decay)
        scheduler = training_scheduler(pipe)
        templates = training_templates(ctx.concept)
        n = latents.shape[0]
        per_epoch = math.ceil(n / cfg.batch_size)
        order: list[int] = []

        def loss_fn(step):
            # An epoch is one shuffled pass over the k images, as the authors' data loader does.
            if step % per_epoch == 0:
                order[:] = torch.randperm(n, generator=ctx.generator).tolist()
            i = step % per_epoch
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            prompts = [fill(ctx.rng.choice(templates), ctx.concept.name) for _ in idx]
            return fewshot_objective(pipe.unet, pipe.text_encoder, scheduler, latents[idx],
                                     tokenize(pipe, prompts), ctx.generator)

        def after_step(step):
            if cfg.checkpoint_every_epoch and (step + 1) % per_epoch == 0:
                ctx.checkpoint(f"epoch-{(step + 1) // per_epoch}")

        optimise(ctx, params, opt, cfg.steps, loss_fn, after_step=after_step)
