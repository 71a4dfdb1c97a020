"""spm / spm-plain: Concept Semi-Permeable Membrane (Lyu et al., CVPR 2024), the seed paper's third baseline.

A rank-1 adapter beside every Linear and Conv2d inside every Transformer2DModel of the UNet
(methods/adapters.py; the base weights stay frozen) is trained with ESD's objective plus SPM's
latent anchoring:

  L = || eps_th(z_t, c) - [e_0 - g (e_c - e_0)] ||^2
      + la_strength * mean_k || eps_th(z_t, a_k) - eps*(z_t, a_k) ||^2

(e_x: the frozen model's prediction, i.e. the adapter off; g = ``guidance``). z_t comes from
``ddim_steps``-step DDIM with guidance ``start_guidance`` on c, run by the model *with* the adapter
(as SPM does), stopped after k ~ U{0..ddim_steps-1} steps and queried at the scheduler's timestep
of step k (the harness's one ESD-family convention, methods/esd.py). The anchors a_k are random
text-embedding matrices, not prompts: Gaussian noise the shape of tau(c), kept with probability
1 - cos(noise, tau(c)), rescaled to ||tau(c)|| x U[0.8, 1.2] (``anchors`` per step). AdamW with a
cosine schedule with ``restarts`` hard restarts after ``warmup_steps`` (the authors use 8-bit
AdamW; torch's is used here).

Two ways to use the trained adapter, registered as two methods (trained identically, so one seed
gives the same adapter):

  spm        the authors' inference: the adapter is kept apart and applied while sampling with a
             per-prompt gate ("facilitated transport"), gamma = max(cos(flat tau(p), flat tau(c)),
             |tokens(p) & tokens(c)| / |tokens(c)|) (special tokens removed), multiplying both
             adapter matrices, so each image gets the adapter at gamma^2. An inference-time edit:
             no weight changes; the adapter is saved with the edit.
  spm-plain  the adapter merged into the weights at multiplier 1 (what loading it as a plain LoRA
             does; the README warns it affects non-target concepts more).

    eraselab erase --method spm --concept snoopy --seed 0 --out out/spm-snoopy
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.adapters import Adapters, adapter_targets
from methods.base import ErasureMethod
from methods.common import (enable_grads, encode_prompts, optimise, randn, tokenize,
                            training_scheduler, unet_out)
from methods.esd import esd_latents


@dataclass
class SpmConfig:
    lr: float = 1e-4
    steps: int = 3000
    warmup_steps: int = 500
    restarts: int = 3
    weight_decay: float = 0.01
    rank: int = 1
    alpha: float = 1.0
    guidance: float = 1.0          # g of the target e_0 - g (e_c - e_0)
    start_guidance: float = 3.0    # guidance of the DDIM run that makes z_t
    ddim_steps: int = 30
    la_strength: float = 1000.0    # latent anchoring weight
    anchors: int = 4               # anchor embeddings per step

    def check(self):
        if self.lr <= 0 or self.steps < 1 or self.ddim_steps < 1 or self.rank < 1 or self.anchors < 0:
            return "lr, steps, ddim_steps and rank must be positive and anchors at least 0"
        if self.warmup_steps < 0 or self.restarts < 1:
            return "warmup_steps must be at least 0 and restarts at least 1"
        return None


def anchor_embeddings(reference: torch.Tensor, n: int, generator) -> torch.Tensor:
    """``n`` random embedding matrices shaped like ``reference`` (1, L, d): SPM's anchors."""
    flat = reference.flatten().float()
    norm = flat.norm()
    out = []
    while len(out) < n:
        noise = randn(flat.shape, generator, flat)
        noise = noise / noise.norm()
        accept = 1 - F.cosine_similarity(noise, flat, dim=0)
        if float(torch.rand((), generator=generator)) < float(accept):
            scale = 0.8 + 0.4 * float(torch.rand((), generator=generator))
            out.append((noise * norm * scale).view(reference.shape[1:]))
    return torch.stack(out).to(reference.dtype)


def schedule(optimizer, cfg: SpmConfig):
    from diffusers.optimization import get_cosine_with_hard_restarts_schedule_with_warmup
    return get_cosine_with_hard_restarts_schedule_with_warmup(
        optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps, num_cycles=cfg.restarts)


def train_adapter(ctx) -> Adapters:
    """Train SPM's adapter on ``ctx.pipe`` (its weights untouched); returns it."""
    pipe, cfg = ctx.pipe, ctx.config
    unet = pipe.unet
    enable_grads(pipe, [])
    adapters = Adapters.around(unet, adapter_targets(unet), cfg.rank, ctx.generator, cfg.alpha)
    opt = torch.optim.AdamW(adapters.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_schedule = schedule(opt, cfg)
    with torch.no_grad():
        emb_c = encode_prompts(pipe, [ctx.concept.name])
        emb_0 = encode_prompts(pipe, [""])
    scheduler = training_scheduler(pipe)
    size = unet.config.sample_size
    shape = (1, unet.config.in_channels, size, size)

    def loss_fn(step):
        with torch.no_grad(), adapters.active():
            z, t, _ = esd_latents(unet, scheduler, emb_c, emb_0, cfg.ddim_steps, cfg.start_guidance, 1,
                                  ctx.generator, shape)
        anchors = anchor_embeddings(emb_c, cfg.anchors, ctx.generator)
        conds = torch.cat([emb_c, anchors])
        with torch.no_grad():  # the frozen model: the adapter is off
            frozen = unet_out(unet, z.expand(len(conds) + 1, *z.shape[1:]), t[0], torch.cat([emb_0, conds]))
        e_0, e_c, e_anchor = frozen[:1], frozen[1:2], frozen[2:]
        with adapters.active():
            pred = unet_out(unet, z.expand(len(conds), *z.shape[1:]), t[0], conds).float()
        loss = F.mse_loss(pred[:1], (e_0 - cfg.guidance * (e_c - e_0)).float())
        if cfg.anchors:
            loss = loss + cfg.la_strength * F.mse_loss(pred[1:], e_anchor.float())
        return loss

    optimise(ctx, adapters.parameters(), opt, cfg.steps, loss_fn, after_step=lambda step: lr_schedule.step())
    return adapters


def gate(pipe, concept: str, prompts: list[str]) -> torch.Tensor:
    """SPM's per-prompt gate gamma (one value per prompt, in [0, 1])."""
    with torch.no_grad():
        embeds = encode_prompts(pipe, [concept, *prompts]).flatten(1).float()
    cosine = F.cosine_similarity(embeds[1:], embeds[:1], dim=1).clamp(min=0)
    tokenizer = pipe.tokenizer
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    ids = tokenize(pipe, [concept, *prompts]).tolist()
    concept_tokens = set(ids[0]) - special
    overlap = torch.tensor([len(concept_tokens & (set(row) - special)) / max(len(concept_tokens), 1)
                            for row in ids[1:]], device=cosine.device)
    return torch.maximum(cosine, overlap).clamp(max=1.0)


class Spm(ErasureMethod):
    """SPM with its inference-time gate (an adapter applied per image at gamma^2)."""

    Config = SpmConfig
    inference_time = True
    quick_overrides = {"steps": 2, "ddim_steps": 3, "warmup_steps": 0, "anchors": 2}

    def inference_spec(self, ctx):
        adapters = train_adapter(ctx)
        ctx.inference_tensors.update(adapters.tensors())
        return {"method": self.name, "concept": ctx.concept.name, "rank": ctx.config.rank,
                "alpha": ctx.config.alpha}

    @classmethod
    def sampling_hooks(cls, pipe, spec, tensors, call):
        from bench.core.errors import EraselabError
        if call.prompts is None:
            raise EraselabError("spm: the gate needs the prompts' text; call the pipeline with prompt=..., "
                                "not prompt_embeds")
        adapters = Adapters.from_tensors(pipe.unet, tensors, spec["alpha"], spec["rank"], where="spm edit")
        scale = gate(pipe, spec["concept"], call.prompts).repeat_interleave(call.images_per_prompt) ** 2

        @contextmanager
        def hooks():
            with adapters.active(scale):
                yield
        return hooks()


class SpmPlain(ErasureMethod):
    """SPM's adapter merged into the UNet weights at multiplier 1 (no gate)."""

    Config = SpmConfig
    quick_overrides = Spm.quick_overrides

    def trainable(self, pipe, config):
        return [f"unet.{name}.weight" for name in adapter_targets(pipe.unet)]

    @torch.no_grad()
    def _merge(self, pipe, adapters):
        for name, delta in adapters.merged_deltas().items():
            pipe.unet.get_submodule(name).weight.add_(delta)

    def apply(self, ctx):
        adapters = train_adapter(ctx)
        self._merge(ctx.pipe, adapters)
