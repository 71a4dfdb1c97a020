"""advunlearn: adversarial unlearning of the text encoder (Zhang et al. 2024).

Trains the text encoder's transformer layers and final layer norm (``te-non-embeddings``: the
embeddings stay frozen; the UNet is the frozen eps*). Each iteration:
  * z_t as in ESD: k ~ U{0..S-1} guided DDIM steps on the concept by the frozen model;
  * inner attack (after ``warmup_steps`` iterations): a one-token soft embedding prefixed to the
    concept ("<adv> {c}") is optimised ``attack_steps`` times (Adam, ``attack_lr``) to pull the
    edited model's output back to the original's, ``|| eps*(z_t, tau_phi(adv+c)) - eps*(z_t, tau0(c)) ||^2``;
  * outer step: the ESD target reached through the trainable encoder on that adversarial prompt,
    ``|| eps*(z_t, tau_phi(adv+c)) - [eps*(z_t,0) - eta (eps*(z_t,c) - eps*(z_t,0))] ||^2``, plus the
    retain term ``gamma || eps*(z_t, tau_phi(c_r)) - eps*(z_t, tau0(c_r)) ||^2`` on prompts of the
    catalog's related concepts (evaluated on the same z_t, which keeps it to two extra passes).
Authors: 1000 iterations, the first 200 without attack, 30 attack steps; the mini family scales
this down (methods/defaults.py). The most expensive method here.

    eraselab erase --method advunlearn --concept "van gogh" --seed 0 --out out/adv-vg
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks.placeholders import PLACEHOLDER as ADV_PLACEHOLDER, Placeholders
from methods.base import ErasureMethod
from methods.common import (batch_indices, ddim_sample, enable_grads, encode_ids, fill, neighbours,
                            optimise, tokenize, training_scheduler, training_templates, unet_out)


@dataclass
class AdvUnlearnConfig:
    lr: float = 1e-5
    steps: int = 1000
    warmup_steps: int = 200       # iterations without the attack
    attack_steps: int = 30
    attack_lr: float = 1e-3
    gamma: float = 0.3            # retain weight
    eta: float = 1.0
    ddim_steps: int = 50
    start_guidance: float = 3.0

    def check(self):
        if self.lr <= 0 or self.steps < 1 or self.ddim_steps < 1 or self.attack_steps < 0:
            return "lr, steps and ddim_steps must be positive; attack_steps >= 0"
        return None


class AdvUnlearn(ErasureMethod):
    """AdvUnlearn: text-encoder erasure hardened by a one-token soft-prompt attack."""

    Config = AdvUnlearnConfig
    component = "text_encoder"
    subset = "te-non-embeddings"
    quick_overrides = {"steps": 2, "warmup_steps": 1, "attack_steps": 2, "ddim_steps": 3}

    def apply(self, ctx):
        pipe, cfg, concept = ctx.pipe, ctx.config, ctx.concept
        te, unet = pipe.text_encoder, pipe.unet
        frozen_te = copy.deepcopy(te).requires_grad_(False).eval()
        params = enable_grads(pipe, self.trainable(pipe, cfg))
        opt = torch.optim.Adam(params, lr=cfg.lr)
        scheduler = training_scheduler(pipe)
        ids_c = tokenize(pipe, [concept.name])
        ids_0 = tokenize(pipe, [""])
        ids_adv = tokenize(pipe, [f"{ADV_PLACEHOLDER} {concept.name}"])
        templates = training_templates(concept)
        retain_prompts = [fill(tp, r) for r in neighbours(concept) for tp in templates[:2]]
        with torch.no_grad():
            emb_c0 = encode_ids(frozen_te, ids_c)
            emb_00 = encode_ids(frozen_te, ids_0)
            init_adv = te.get_input_embeddings()(ids_adv)[0, 1].clone()
        size = unet.config.sample_size
        shape = (1, unet.config.in_channels, size, size)
        soft = Placeholders(te, pipe.tokenizer)

        def attack(z, t):
            adv = init_adv.clone().requires_grad_(True)
            attack_opt = torch.optim.Adam([adv], lr=cfg.attack_lr)
            with torch.no_grad():
                goal = unet_out(unet, z, t, emb_c0)
            for _ in range(cfg.attack_steps):
                soft.vectors = adv.unsqueeze(0)
                loss = F.mse_loss(unet_out(unet, z, t, encode_ids(te, ids_adv)).float(), goal.float())
                (grad,) = torch.autograd.grad(loss, [adv])  # the encoder's grads stay untouched
                adv.grad = grad
                attack_opt.step()
            soft.vectors = None
            return adv.detach()

        def loss_fn(step):
            k = int(torch.randint(0, cfg.ddim_steps, (1,), generator=ctx.generator))
            z, t = ddim_sample(unet, scheduler, emb_c0, emb_00, cfg.ddim_steps, k,
                               cfg.start_guidance, ctx.generator, shape)
            with torch.no_grad():
                e_0 = unet_out(unet, z, t, emb_00)
                e_c = unet_out(unet, z, t, emb_c0)
                target = e_0 - cfg.eta * (e_c - e_0)
            if step >= cfg.warmup_steps and cfg.attack_steps > 0:
                soft.vectors = attack(z, t).unsqueeze(0)
                cond = encode_ids(te, ids_adv)
                soft.vectors = None
            else:
                cond = encode_ids(te, ids_c)
            loss = F.mse_loss(unet_out(unet, z, t, cond).float(), target.float())
            if cfg.gamma > 0:
                r = batch_indices(len(retain_prompts), 1, ctx.generator)[0]
                ids_r = tokenize(pipe, [retain_prompts[r]])
                with torch.no_grad():
                    e_r0 = unet_out(unet, z, t, encode_ids(frozen_te, ids_r))
                loss = loss + cfg.gamma * F.mse_loss(
                    unet_out(unet, z, t, encode_ids(te, ids_r)).float(), e_r0.float())
            return loss

        try:
            optimise(ctx, params, opt, cfg.steps, loss_fn)
        finally:
            soft.remove()
