"""esd-x / esd-x-strict / esd-u: Erased Stable Diffusion (Gandikota et al. 2023), paper-era.

Trains the UNet so that its prediction for the concept follows negative guidance of the frozen
model: ``|| eps_th(z_t, c, t) - [eps*(z_t, 0, t) - eta (eps*(z_t, c, t) - eps*(z_t, 0, t))] ||^2``
with eta = 1 (the paper-era convention; the newer diffusers script writes eta = 2 for a target
written around eps*(c) instead -- not mixed here). z_t: from noise, k ~ U{0..S-1} DDIM steps
(S = ``ddim_steps``) with guidance ``start_guidance`` on c by the frozen model; t is the
scheduler's timestep at step k. Adam, batch 1, the concept's name as the prompt.

The frozen model's part of each step (z_t and the target) depends only on that step's draws, so
it runs ahead for ``sample_batch`` steps at a time in one batched pass, with the same draws in the
same order as one step at a time: the objective and the data are unchanged, the frozen model's
arithmetic runs on batches instead of single latents (faster on every device).

  esd-x         ``xattn``: every cross-attention projection (to_q, to_k, to_v, to_out)
  esd-x-strict  ``xattn-kv``: cross-attention to_k / to_v only
  esd-u         ``non-xattn``: every Linear/Conv outside cross-attention, except the time
                embedding and the output layers
(the subsets of methods/subsets.py). ``--variant`` (config ``params``) trains another subset with
the same objective, e.g. ``full`` for the whole UNet, so ESD joins the UNet ablation.

    eraselab erase --method esd-x --concept "van gogh" --seed 0 --out out/esd-vg
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.base import UnetSubsetMethod
from methods.common import (ddim_sample_batch, enable_grads, encode_prompts, optimise, randn,
                            training_scheduler, unet_out)
from methods.subsets import UNET, check


@dataclass
class EsdConfig:
    lr: float = 1e-5
    steps: int = 1000
    eta: float = 1.0
    ddim_steps: int = 50
    start_guidance: float = 3.0
    sample_batch: int = 8         # steps whose z_t and targets the frozen model computes together
    params: str | None = None     # a UNet subset (methods/subsets.py); None: the class's own

    def check(self):
        if self.lr <= 0 or self.steps < 1 or self.ddim_steps < 1 or self.sample_batch < 1:
            return "lr, steps, ddim_steps and sample_batch must be positive"
        return None if self.params is None else check(self.params, UNET)


def esd_latents(unet, scheduler, cond, uncond, ddim_steps: int, guidance: float, count: int,
                generator, shape) -> tuple:
    """ESD's z_t for ``count`` training steps: (z [count, ...], t [count], stops).

    Per step, k ~ U{0..ddim_steps-1} and a noise draw, in the order a one-step-at-a-time loop
    makes them; then ``unet`` runs k guided DDIM steps on ``cond`` and t is the scheduler's
    timestep at step k (the harness's one ESD-family convention). ``unet`` is the frozen model
    in ESD, the model being trained in methods that sample with it (one step at a time)."""
    stops, noises = [], []
    for _ in range(count):
        stops.append(int(torch.randint(0, ddim_steps, (1,), generator=generator)))
        noises.append(randn(shape, generator, cond))
    z, t = ddim_sample_batch(unet, scheduler, cond, uncond, ddim_steps, stops, guidance, torch.cat(noises))
    return z, t, stops


class EsdBase(UnetSubsetMethod):
    """ESD's training loop; subclasses set the subset, and ESD-derived methods (ANT) their
    targets and a gradient mask."""

    shared_base = True
    Config = EsdConfig
    version = "2"  # z_t and targets batched ahead: rounding differs from one-at-a-time edits
    quick_overrides = {"steps": 2, "ddim_steps": 3}

    def apply(self, ctx):
        pipe, cfg = ctx.pipe, ctx.config
        frozen = copy.deepcopy(pipe.unet).requires_grad_(False).eval()
        params = enable_grads(pipe, self.trainable(pipe, cfg))
        opt = torch.optim.Adam(params, lr=cfg.lr)
        with torch.no_grad():
            emb_c = encode_prompts(pipe, [ctx.concept.name])
            emb_0 = encode_prompts(pipe, [""])
        scheduler = training_scheduler(pipe)
        size = pipe.unet.config.sample_size
        shape = (1, pipe.unet.config.in_channels, size, size)

        ahead: list[tuple] = []  # (z_t, t, target) of the coming steps, in step order

        def frozen_part(count: int) -> list[tuple]:
            z, t, stops = esd_latents(frozen, scheduler, emb_c, emb_0, cfg.ddim_steps, cfg.start_guidance,
                                      count, ctx.generator, shape)
            with torch.no_grad():
                e_0 = unet_out(frozen, z, t, emb_0.expand(count, *emb_0.shape[1:]))
                e_c = unet_out(frozen, z, t, emb_c.expand(count, *emb_c.shape[1:]))
                target = self.targets(e_0, e_c, stops, cfg)
            return [(z[i:i + 1], t[i], target[i:i + 1]) for i in range(count)]

        def loss_fn(step):
            if not ahead:
                ahead.extend(frozen_part(min(cfg.sample_batch, cfg.steps - step)))
            z, t, target = ahead.pop(0)
            return F.mse_loss(unet_out(pipe.unet, z, t, emb_c).float(), target.float())

        mask = self.gradient_mask(ctx, frozen, params, emb_0, scheduler)
        optimise(ctx, params, opt, cfg.steps, loss_fn, grad_mask=mask)

    def targets(self, e_0, e_c, stops: list[int], cfg):
        """The frozen model's targets for latents that stopped after ``stops`` DDIM steps."""
        return e_0 - cfg.eta * (e_c - e_0)

    def gradient_mask(self, ctx, frozen, params, emb_0, scheduler) -> dict | None:
        """id(parameter) -> 0/1 mask its gradient is multiplied by (None: no mask)."""
        return None


class EsdX(EsdBase):
    """ESD on every cross-attention Linear."""

    subset = "xattn"


class EsdXStrict(EsdBase):
    """ESD on attn2.to_k / to_v only."""

    subset = "xattn-kv"


class EsdU(EsdBase):
    """ESD on every non-cross-attention Linear/Conv (paper-era exclusions)."""

    subset = "non-xattn"
