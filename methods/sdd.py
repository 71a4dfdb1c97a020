"""sdd: Safe self-Distillation Diffusion (Kim et al., 2023): the concept's prediction is distilled
onto the model's own unconditional one.

  L = || sg(eps_th(z_t, "")) - eps_th(z_t, c) ||^2

The target is the *student's* unconditional prediction (detached), not a frozen model's. z_t
comes from ``ddim_steps``-step DDIM with guidance ``start_guidance`` on c run by an EMA teacher
(theta_ema <- d theta_ema + (1 - d) theta after every step, d = ``ema_decay``), stopped after
k ~ U{0..ddim_steps-1} steps and queried at the scheduler's timestep of step k (the harness's one
ESD-family convention, methods/esd.py). AdamW, gradient norm clipped at 1; the edit kept is the
EMA teacher's weights, as the authors release. Trains ``xattn`` (every cross-attention projection)
by default; ``--variant`` trains another UNet subset.

The EMA decay sets how many recent steps the released weights average (1 / (1 - d) steps: 1,000
of the authors' 1,500); a shorter run keeps that share with a smaller d (methods/defaults.py).

    eraselab erase --method sdd --concept snoopy --seed 0 --out out/sdd-snoopy
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.base import UnetSubsetMethod
from methods.common import enable_grads, encode_prompts, optimise, training_scheduler, unet_out
from methods.esd import esd_latents
from methods.subsets import UNET, check


@dataclass
class SddConfig:
    lr: float = 1e-5
    steps: int = 1500
    weight_decay: float = 1e-4
    ema_decay: float = 0.999
    start_guidance: float = 3.0
    ddim_steps: int = 50
    grad_clip: float = 1.0
    params: str | None = None     # a UNet subset (methods/subsets.py); None: xattn

    def check(self):
        if self.lr <= 0 or self.steps < 1 or self.ddim_steps < 1:
            return "lr, steps and ddim_steps must be positive"
        if not 0 <= self.ema_decay < 1:
            return "ema_decay must be in [0, 1)"
        return None if self.params is None else check(self.params, UNET)


class Sdd(UnetSubsetMethod):
    """SDD: the concept's noise prediction distilled to the model's own unconditional one."""

    Config = SddConfig
    subset = "xattn"
    quick_overrides = {"steps": 2, "ddim_steps": 3}

    def apply(self, ctx):
        pipe, cfg = ctx.pipe, ctx.config
        names = self.trainable(pipe, cfg)
        teacher = copy.deepcopy(pipe.unet).requires_grad_(False).eval()
        params = enable_grads(pipe, names)
        teacher_params = dict(teacher.named_parameters())
        ema = [teacher_params[n[len("unet."):]] for n in names]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        with torch.no_grad():
            emb_c = encode_prompts(pipe, [ctx.concept.name])
            emb_0 = encode_prompts(pipe, [""])
        scheduler = training_scheduler(pipe)
        size = pipe.unet.config.sample_size
        shape = (1, pipe.unet.config.in_channels, size, size)

        def loss_fn(step):
            z, t, _ = esd_latents(teacher, scheduler, emb_c, emb_0, cfg.ddim_steps, cfg.start_guidance, 1,
                                  ctx.generator, shape)
            pred = unet_out(pipe.unet, torch.cat([z, z]), t[0], torch.cat([emb_0, emb_c])).float()
            return F.mse_loss(pred[1:], pred[:1].detach())

        @torch.no_grad()
        def update_teacher(step):
            for e, p in zip(ema, params):
                e.mul_(cfg.ema_decay).add_(p.detach(), alpha=1 - cfg.ema_decay)

        optimise(ctx, params, opt, cfg.steps, loss_fn, grad_clip=cfg.grad_clip, after_step=update_teacher)
        with torch.no_grad():
            for e, p in zip(ema, params):
                p.copy_(e)
