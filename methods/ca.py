"""ca: Concept Ablation (Kumari et al. 2023), the model-based variant.

Generates anchor images with the unedited model from anchor prompts (the anchor is the concept's
catalog parent, e.g. "english springer" for snoopy; "painting" for styles and "object" for objects
without a parent, or ``--set anchor=...``), then trains
``|| eps_th(z_t, c_target, t) - sg(eps_th(z_t, c_anchor, t)) ||^2`` where the target prompt is the
anchor prompt with the anchor replaced by the concept, so the concept's prompts map onto the
anchor's predictions. Optional prior preservation adds ``L_DM(anchor images, c_anchor)``.
AdamW, lr 2e-6 x batch (``scale_lr``), weight decay 1e-2, grad clip 1.
Variants: any UNet subset of methods/subsets.py: ``xattn-kv`` (cross-attention keys and values,
default; the old name ``kv`` still works), ``attn`` (every attention projection), ``full``.
Generating the anchor set dominates its cost; the mini family uses 16 anchors (methods/defaults.py).
The anchor set is kept as the sampler's final latents, not decoded to images and encoded again
as the authors' pipeline does (it saves its images): the decode/encode round trip only adds the
VAE's reconstruction error and cost, and the model trains on its own samples either way.

    eraselab erase --method ca --concept snoopy --seed 0 --out out/ca-snoopy
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.base import UnetSubsetMethod
from methods.common import (batch_indices, denoising_loss, enable_grads, encode_prompts, fill,
                            generate_latents, generic_word, noise_latents, optimise,
                            training_scheduler, training_templates, unet_out)
from methods.subsets import UNET, check


@dataclass
class CaConfig:
    lr: float = 2e-6
    scale_lr: bool = True        # effective lr = lr x batch_size, as the authors do
    batch_size: int = 4
    steps: int = 100
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    anchor_images: int = 1000
    gen_steps: int = 50
    gen_guidance: float = 6.0
    anchor: str | None = None    # None: the catalog parent, else a generic word
    prior_preservation: bool = False
    prior_weight: float = 1.0
    params: str = "xattn-kv"     # a UNet subset (methods/subsets.py)

    def check(self):
        problem = check(self.params, UNET)
        if problem:
            return problem
        if self.lr <= 0 or self.steps < 1 or self.batch_size < 1 or self.anchor_images < 1:
            return "lr, steps, batch_size and anchor_images must be positive"
        return None


class ConceptAblation(UnetSubsetMethod):
    """Concept Ablation: map the concept's predictions onto an anchor concept's."""

    Config = CaConfig
    quick_overrides = {"steps": 2, "anchor_images": 2, "gen_steps": 2, "batch_size": 2}

    def apply(self, ctx):
        pipe, cfg, concept = ctx.pipe, ctx.config, ctx.concept
        anchor = cfg.anchor or concept.parent or generic_word(concept)
        templates = training_templates(concept)
        chosen = [templates[i % len(templates)] for i in range(cfg.anchor_images)]
        anchor_prompts = [fill(tp, anchor) for tp in chosen]
        target_prompts = [fill(tp, concept.name) for tp in chosen]
        latents = generate_latents(pipe, anchor_prompts, cfg.gen_steps, cfg.gen_guidance, ctx.generator)
        params = enable_grads(pipe, self.trainable(pipe, cfg))
        lr = cfg.lr * cfg.batch_size if cfg.scale_lr else cfg.lr
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        scheduler = training_scheduler(pipe)

        def loss_fn(step):
            idx = batch_indices(latents.shape[0], cfg.batch_size, ctx.generator)
            with torch.no_grad():
                cond_a = encode_prompts(pipe, [anchor_prompts[i] for i in idx])
                cond_t = encode_prompts(pipe, [target_prompts[i] for i in idx])
            noisy, target, t = noise_latents(scheduler, latents[idx], ctx.generator)
            with torch.no_grad():
                e_anchor = unet_out(pipe.unet, noisy, t, cond_a)
            loss = F.mse_loss(unet_out(pipe.unet, noisy, t, cond_t).float(), e_anchor.float())
            if cfg.prior_preservation:
                loss = loss + cfg.prior_weight * denoising_loss(pipe.unet, noisy, t, cond_a, target)
            return loss

        optimise(ctx, params, opt, cfg.steps, loss_fn, grad_clip=cfg.grad_clip)
