"""fewshot-te: few-shot unlearning of the text encoder (Fuchi & Takagi, BMVC 2024; the seed paper).

Gradient ascent on the textual-inversion denoising loss, through the text encoder only:
``L = - E_{t,eps} || target - eps*(z_t, t, tau_phi(prompt)) ||^2`` with k real images (latents
fixed, encoded once), a random textual-inversion template per sample, t uniform, Adam. The UNet
and VAE are frozen. Variants choose the trained text-encoder parameters, in the words of
methods/subsets.py (one word, or several joined by ``+``):

  te-all                every text-encoder parameter (what the authors' released runs trained:
                        their freezing code had a ``require_grad`` typo until mid-2026)
  te-mlp                every ``mlp.fc1``/``mlp.fc2``
  te-attn               every ``self_attn.{q,k,v,out}_proj``
  te-mlp+te-attn        both
  te-mlp+te-final-attn  all MLPs plus the last layer's self-attention (the authors' intent; default)
  te-layer<N>           every parameter of encoder layer N; ``te-layer<N>-mlp``, ``te-layer<N>-attn``
                        its MLP or self-attention, e.g. ``te-layer0-mlp+te-layer1-mlp``

The names used before (``all``, ``mlp``, ``attn``, ``mlp+attn``, ``mlp+final-attn``,
``layers=[i,...]``, ``KIND:layers=[i,...]``) still select the same parameters, with a note.

    eraselab erase --method fewshot-te --variant te-all --concept snoopy --seed 0 --out out/snoopy
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from methods.base import ErasureMethod
from methods.common import (denoising_loss, enable_grads, encode_ids, fill, images_to_latents,
                            noise_latents, optimise, tokenize, training_scheduler,
                            training_templates)
from methods.subsets import TEXT_ENCODER, check, words


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
    params: str = "te-mlp+te-final-attn"  # a text-encoder subset (methods/subsets.py)
    checkpoint_every_epoch: bool = False  # offer the edit after every epoch (on_checkpoint)

    def check(self):
        if self.lr <= 0 or self.steps < 1 or self.batch_size < 1 or self.k < 1:
            return "lr, steps, batch_size and k must be positive"
        if not 0.0 <= self.hflip_p <= 1.0:
            return "hflip_p must be in [0, 1]"
        return check(self.params, TEXT_ENCODER)


def fewshot_objective(unet, text_encoder, scheduler, latents, ids, generator):
    """The seed paper's loss on one batch: the negated denoising loss (gradient ascent)."""
    noisy, target, t = noise_latents(scheduler, latents, generator)
    return -denoising_loss(unet, noisy, t, encode_ids(text_encoder, ids), target)


class FewShotTE(ErasureMethod):
    """Few-shot unlearning of the text encoder (the seed paper)."""

    version = "1"
    Config = FewShotTEConfig
    variants = tuple(words(TEXT_ENCODER))
    variant_field = "params"
    open_variants = True  # layer words and unions; the config checks the words
    needs_images = True
    component = TEXT_ENCODER
    quick_overrides = {"steps": 2}

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
