"""trce: TRCE (Chen et al., 2025), a closed-form edit of one token position, then early-step
contrastive fine-tuning.

Stage 1 (closed form, every ``attn2.to_k`` / ``attn2.to_v`` weight W, W0 its original): the
concept's prompts (its name in the first ``templates`` training templates) are mapped, at their
first end-of-text position only (the authors' token weights [SoT 0, first EoT 1, last pad 0,
keywords 0]), to the same position of the safe prompts (the same templates filled with the safe
word), with prior rows kept:

  W = (lam W0 + s_e sum_i (W0 g_i) e_i^T + a sum_j (W0 p_j) p_j^T)
      (lam I + s_e sum_i e_i e_i^T + a sum_j p_j p_j^T)^-1

(methods/uce.py's solve; e_i / g_i: the first-EoT encoder outputs of concept / safe prompt i;
a = ``prior_scale``). The authors' lam is 0, so the prior rows alone keep the system solvable;
a singular system is a one-line error, checked before any sampling. Encoder outputs that lie in
a hyperplane (a final layer norm without bias, as the tiny test encoder's) make lam = 0
singular, so the mini family sets a small lam (methods/defaults.py). The authors' prior is a
cache over COCO captions; here the prior rows are every position (SoT through the last pad) of
the other catalog concepts' names in their own training templates (the concept's neighbours
when there is no catalog): every position, because an ordinary prompt presents all 77 rows to
the edited keys and values.

The safe word: the authors hand-write one per malicious category ("a person wearing clothes");
here it is generic, as CA's anchor: the catalog parent, else methods.common.generic_word for
objects, instances and logos, and "" for styles (the template's own "a painting in the style
of" stays). ``--set safe=...`` sets it.

Stage 2 (fine-tunes ``attn1.*`` and ``attn2.to_q``, starting from stage 1): latents from DDIM
trajectories of the original model (``ddim_steps`` steps), ``concept_trajectories`` of the
concept's prompts (the same templates, cycled, one noise each, guidance
``trajectory_guidance``) and ``uncond_trajectories`` unconditional ones (the authors' prompt ""
at CFG 7.5 is the plain unconditional prediction, so they run without guidance). Each epoch
visits every concept trajectory once, in a fresh order, at an early step k ~ U{0..early_steps}
(the latent after k steps, the UNet queried at the schedule's k-th timestep), with targets of
the frozen original (e_s: safe prompt, e_n: the concept prompt, e_0: ""):

  prefer = e_s + w (e_s - e_0),   reject = e_n + w (e_n - e_0)
  L_target = 1/2 [h(eps(z, c_n)) + h(eps(z, 0))],  h(x) = ReLU(beta (|x - prefer|^2 - |x - reject|^2 + m))
  L = L_target + preserve_weight * mean over uncond_samples latents |eps(z_u, 0) - eps_1(z_u, 0)|^2

(eps_1: the stage-1 model; z_u: unconditional-trajectory latents at steps ~ U{0..ddim_steps-1};
|.|^2 is the mean over a sample's elements: our reading, as on a sum over the latent the
margin 0.01 would vanish). AdamW, batch 1.

Every trajectory draw (which trajectory, which step) is made before any sampling, so only the
latents a draw uses are kept in memory and each trajectory runs only as far as its latest drawn
step: the same distribution as caching the authors' full trajectories, at a fraction of the
cost. The frozen model's targets are computed on those latents before stage 1 edits the weights,
and the stage-1 targets right after it, so no copy of the UNet is held. ``epochs=0`` stops after
stage 1. The delta is the final weights of every changed tensor: stage 1's to_k / to_v and stage
2's attn1.* and attn2.to_q.

    eraselab erase --method trce --concept church --seed 0 --out out/trce-church
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.core.errors import EraselabError
from methods.base import ErasureMethod
from methods.common import (enable_grads, encode_ids, encode_prompts, fill, generic_word,
                            neighbours, optimise, randn, tokenize, training_scheduler,
                            training_templates, unet_out)
from methods.delta import named_tensors
from methods.subsets import UNET, select
from methods.uce import uce_closed_form

ENCODE_BATCH = 64  # prompts per text-encoder call (bounds memory for large prior sets)


@dataclass
class TrceConfig:
    # stage 1: closed form on the first end-of-text position
    safe: str | None = None          # None: the catalog parent, else a generic word; "" for styles
    templates: int = 15              # template augmentations of the concept (and of each prior concept)
    lam: float = 0.0
    erase_scale: float = 1.0
    prior_scale: float = 0.01
    # stage 2: early-step contrastive fine-tuning of attn1.* and attn2.to_q
    lr: float = 1e-6
    weight_decay: float = 0.01
    epochs: int = 3                  # passes over the concept trajectories (0: stage 1 only)
    concept_trajectories: int = 100  # the authors' 20 concepts x 5 seeds
    uncond_trajectories: int = 2000
    uncond_samples: int = 4          # unconditional latents in each step's preservation term
    ddim_steps: int = 50
    early_steps: int = 25            # k ~ U{0..early_steps} for the concept latents
    trajectory_guidance: float = 3.0
    w: float = 15.0
    beta: float = 1.0
    margin: float = 0.01
    preserve_weight: float = 100.0
    sample_batch: int = 8            # trajectories (and target queries) the frozen model runs together

    def check(self):
        if self.lam < 0 or self.prior_scale < 0 or self.erase_scale <= 0:
            return "lam and prior_scale must be at least 0 and erase_scale positive"
        if self.lam == 0 and self.prior_scale == 0:
            return "lam and prior_scale are both 0: the stage-1 system is singular; raise one of them"
        if self.templates < 1 or self.lr <= 0 or self.epochs < 0 or self.weight_decay < 0:
            return "templates and lr must be positive, epochs and weight_decay at least 0"
        if min(self.concept_trajectories, self.uncond_trajectories, self.uncond_samples,
               self.ddim_steps, self.sample_batch) < 1:
            return ("concept_trajectories, uncond_trajectories, uncond_samples, ddim_steps and "
                    "sample_batch must be positive")
        if not 0 <= self.early_steps < self.ddim_steps:
            return f"early_steps must be in [0, ddim_steps - 1 = {self.ddim_steps - 1}], " \
                   f"got {self.early_steps}"
        if self.beta <= 0 or self.margin < 0 or self.preserve_weight < 0:
            return "beta must be positive, margin and preserve_weight at least 0"
        return None


def safe_word(concept, override: str | None) -> str:
    """The safe word the concept's prompts map to (see the module docstring)."""
    if override is not None:
        return override
    return "" if concept.is_style else (concept.parent or generic_word(concept))


@torch.no_grad()
def encode_all(pipe, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, encoder outputs) of ``prompts``, encoded ``ENCODE_BATCH`` at a time."""
    ids = tokenize(pipe, prompts)
    hidden = torch.cat([encode_ids(pipe.text_encoder, ids[i:i + ENCODE_BATCH])
                        for i in range(0, len(prompts), ENCODE_BATCH)])
    return ids, hidden


def first_eot_rows(pipe, prompts: list[str]) -> torch.Tensor:
    """(n, d): each prompt's encoder output at its first end-of-text token."""
    ids, hidden = encode_all(pipe, prompts)
    first = (ids == pipe.tokenizer.eos_token_id).int().argmax(dim=1)  # truncation keeps one EoT
    return hidden[torch.arange(len(prompts)), first].float()


def prior_prompts(ctx, n_templates: int) -> list[str]:
    """Captions of the other concepts (the catalog's, else the neighbours) in their training templates."""
    concept = ctx.concept
    if ctx.catalog is not None:
        others = [c for c in ctx.catalog.concepts.values()
                  if c.name != concept.name and c.name not in concept.aliases]
        return [fill(t, c.name) for c in others for t in training_templates(c)[:n_templates]]
    templates = training_templates(concept)[:n_templates]
    return [fill(t, name) for name in neighbours(concept) for t in templates]


def check_solvable(erase_rows: torch.Tensor, prior_rows: torch.Tensor | None, lam: float,
                   erase_scale: float, prior_scale: float) -> None:
    """A one-line EraselabError if stage 1's system (lam I + s_e E^T E + a P^T P) is singular."""
    d = erase_rows.shape[1]
    # the solve's matrix, the same for every projection, in float64: a float32 product would
    # round a rank-deficient system to a full-rank one
    rows = erase_rows.double().cpu()
    gram = lam * torch.eye(d, dtype=torch.float64) + erase_scale * rows.T @ rows
    if prior_rows is not None and prior_rows.shape[0]:
        rows = prior_rows.double().cpu()
        gram = gram + prior_scale * rows.T @ rows
    rank = int(torch.linalg.matrix_rank(gram))
    if rank < d:
        raise EraselabError(f"trce: the stage-1 system is singular (rank {rank} of {d}); "
                            f"raise lam or prior_scale")


@torch.no_grad()
def stage_one(pipe, names: list[str], erase_rows: torch.Tensor, safe_rows: torch.Tensor,
              prior_rows: torch.Tensor | None, lam: float, erase_scale: float, prior_scale: float) -> None:
    """Map ``erase_rows`` onto ``safe_rows`` in every projection ``names`` (in place), keeping
    ``prior_rows``; a singular system is a one-line EraselabError."""
    check_solvable(erase_rows, prior_rows, lam, erase_scale, prior_scale)
    tensors = named_tensors(pipe)
    for name in names:
        W = tensors[name]
        new = uce_closed_form(W.detach(), erase_rows, safe_rows, prior_rows, lam, erase_scale, prior_scale)
        if not torch.isfinite(new).all():
            raise EraselabError(f"trce: the stage-1 solve for {name} is not finite; raise lam or prior_scale")
        W.copy_(new.to(W.dtype))


def hinge(pred: torch.Tensor, prefer: torch.Tensor, reject: torch.Tensor, beta: float,
          margin: float) -> torch.Tensor:
    """ReLU(beta (|pred - prefer|^2 - |pred - reject|^2 + margin)), |.|^2 the mean over each
    sample's elements; the batch mean."""
    to_prefer = (pred.float() - prefer.float()).pow(2).flatten(1).mean(1)
    to_reject = (pred.float() - reject.float()).pow(2).flatten(1).mean(1)
    return F.relu(beta * (to_prefer - to_reject + margin)).mean()


@torch.no_grad()
def trajectory_latents(unet, scheduler, noise: torch.Tensor, wanted: dict[int, set[int]],
                       n_steps: int, batch: int, cond: torch.Tensor | None = None,
                       uncond: torch.Tensor | None = None, guidance: float = 1.0) -> dict:
    """{(i, k): latent after k DDIM steps of trajectory i} for every k in ``wanted[i]``.

    Trajectory i starts from ``noise[i]``; with ``cond`` (rows per trajectory) it is guided,
    ``uncond + guidance (cond - uncond)``, else unconditional (``uncond`` alone). Trajectories run
    ``batch`` at a time, longest first, each only as far as its latest wanted step (a
    deterministic DDIM step keeps no state, so the running ones shrink to a leading slice)."""
    scheduler.set_timesteps(n_steps)
    order = sorted(wanted, key=lambda i: (-max(wanted[i]), i))
    out = {}
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        last = [max(wanted[i]) for i in chunk]
        z = noise[chunk] * scheduler.init_noise_sigma
        for step in range(last[0] + 1):
            for row, i in enumerate(chunk):
                if step in wanted[i]:
                    out[(i, step)] = z[row:row + 1].clone()
            m = sum(1 for s in last if s > step)
            if m == 0:
                break
            t = scheduler.timesteps[step]
            zin = scheduler.scale_model_input(z[:m], t)
            if cond is None:
                eps = unet_out(unet, zin, t, uncond.expand(m, *uncond.shape[1:]))
            else:
                embeds = torch.cat([uncond.expand(m, *uncond.shape[1:]), cond[chunk[:m]]])
                e_u, e_c = unet_out(unet, torch.cat([zin, zin]), t, embeds).chunk(2)
                eps = e_u + guidance * (e_c - e_u)
            z[:m] = scheduler.step(eps, t, z[:m]).prev_sample
    return out


class Trce(ErasureMethod):
    """TRCE: closed form on the first end-of-text position (xattn-kv), then early-step
    contrastive fine-tuning of self-attention and the cross-attention queries."""

    Config = TrceConfig
    subset = "attn"  # narrowed in ``trainable`` to the two stages' tensors
    quick_overrides = {"templates": 2, "epochs": 1, "concept_trajectories": 2, "uncond_trajectories": 2,
                       "uncond_samples": 1, "ddim_steps": 4, "early_steps": 2}

    @staticmethod
    def stage_one_names(pipe) -> list[str]:
        # the closed form is for the projection matrices (SD's to_k / to_v have no bias)
        return [n for n in select(pipe, "xattn-kv", UNET, "trce") if n.endswith(".weight")]

    @staticmethod
    def stage_two_names(pipe) -> list[str]:
        xattn = set(select(pipe, "xattn", UNET, "trce"))
        return [n for n in select(pipe, "attn", UNET, "trce")
                if n not in xattn or ".attn2.to_q." in n]  # self-attention and the cross-attention queries

    def trainable(self, pipe, config):
        names = set(self.stage_one_names(pipe)) | set(self.stage_two_names(pipe))
        return [n for n in select(pipe, "attn", UNET, "trce") if n in names]

    def apply(self, ctx):
        pipe, cfg, concept = ctx.pipe, ctx.config, ctx.concept
        templates = list(training_templates(concept)[:cfg.templates])
        safe = safe_word(concept, cfg.safe)
        concept_prompts = [fill(t, concept.name) for t in templates]
        safe_prompts = [fill(t, safe) for t in templates]
        erase_rows = first_eot_rows(pipe, concept_prompts)
        safe_rows = first_eot_rows(pipe, safe_prompts)
        prior = prior_prompts(ctx, cfg.templates)
        prior_rows = encode_all(pipe, prior)[1].flatten(0, 1).float() if prior else None
        # a singular system stops the run before any sampling
        check_solvable(erase_rows, prior_rows, cfg.lam, cfg.erase_scale, cfg.prior_scale)
        # the original model's trajectories and targets, before stage 1 edits it
        cache = self.cache(ctx, concept_prompts, safe_prompts) if cfg.epochs else None
        stage_one(pipe, self.stage_one_names(pipe), erase_rows, safe_rows, prior_rows,
                  cfg.lam, cfg.erase_scale, cfg.prior_scale)
        if cache is not None:
            self.stage_two(ctx, cache)

    @torch.no_grad()
    def cache(self, ctx, concept_prompts: list[str], safe_prompts: list[str]) -> dict:
        """The stage-2 draws, their latents and the frozen original's targets (see the docstring)."""
        pipe, cfg, g = ctx.pipe, ctx.config, ctx.generator
        unet = pipe.unet
        n_c, n_u = cfg.concept_trajectories, cfg.uncond_trajectories
        # every draw first: (trajectory, step) per concept step, per epoch in a fresh order
        concept_draws = []
        for _ in range(cfg.epochs):
            for i in torch.randperm(n_c, generator=g).tolist():
                concept_draws.append((i, int(torch.randint(0, cfg.early_steps + 1, (1,), generator=g))))
        uncond_draws = [(int(torch.randint(0, n_u, (1,), generator=g)),
                         int(torch.randint(0, cfg.ddim_steps, (1,), generator=g)))
                        for _ in range(len(concept_draws) * cfg.uncond_samples)]
        size = unet.config.sample_size
        shape = (1, unet.config.in_channels, size, size)
        emb_0 = encode_prompts(pipe, [""])
        emb_n = encode_prompts(pipe, [concept_prompts[i % len(concept_prompts)] for i in range(n_c)])
        emb_s = encode_prompts(pipe, [safe_prompts[i % len(safe_prompts)] for i in range(n_c)])
        noise_c = torch.cat([randn(shape, g, emb_0) for _ in range(n_c)])
        noise_u = torch.cat([randn(shape, g, emb_0) for _ in range(n_u)])
        scheduler = training_scheduler(pipe)

        def wanted(draws):
            out: dict[int, set[int]] = {}
            for i, k in draws:
                out.setdefault(i, set()).add(k)
            return out

        with ctx.progress_bar(2, "trce trajectories") as bar:
            lat_c = trajectory_latents(unet, scheduler, noise_c, wanted(concept_draws), cfg.ddim_steps,
                                       cfg.sample_batch, cond=emb_n, uncond=emb_0,
                                       guidance=cfg.trajectory_guidance)
            bar.update(1)
            lat_u = trajectory_latents(unet, scheduler, noise_u, wanted(uncond_draws), cfg.ddim_steps,
                                       cfg.sample_batch, uncond=emb_0)
            bar.update(1)
        timesteps = scheduler.timesteps
        z_c = torch.cat([lat_c[d] for d in concept_draws])
        t_c = torch.stack([timesteps[k] for _, k in concept_draws]).to(z_c.device)
        idx_c = [i for i, _ in concept_draws]
        prefer, reject = [], []
        for s in range(0, len(concept_draws), cfg.sample_batch):
            part = slice(s, s + cfg.sample_batch)
            z, t, idx = z_c[part], t_c[part], idx_c[part]
            m = len(idx)
            e_s, e_n, e_0 = unet_out(unet, torch.cat([z, z, z]), torch.cat([t, t, t]),
                                     torch.cat([emb_s[idx], emb_n[idx], emb_0.expand(m, *emb_0.shape[1:])])
                                     ).chunk(3)
            prefer.append(e_s + cfg.w * (e_s - e_0))
            reject.append(e_n + cfg.w * (e_n - e_0))
        z_u = torch.cat([lat_u[d] for d in uncond_draws])
        t_u = torch.stack([timesteps[k] for _, k in uncond_draws]).to(z_u.device)
        return {"z_c": z_c, "t_c": t_c, "idx_c": idx_c, "prefer": torch.cat(prefer),
                "reject": torch.cat(reject), "z_u": z_u, "t_u": t_u, "emb_n": emb_n, "emb_0": emb_0}

    def stage_two(self, ctx, cache: dict) -> None:
        pipe, cfg = ctx.pipe, ctx.config
        emb_n, emb_0, z_u, t_u = cache["emb_n"], cache["emb_0"], cache["z_u"], cache["t_u"]
        with torch.no_grad():  # the stage-1 model's unconditional predictions (preservation targets)
            keep = torch.cat([unet_out(pipe.unet, z_u[s:s + cfg.sample_batch], t_u[s:s + cfg.sample_batch],
                                       emb_0.expand(len(z_u[s:s + cfg.sample_batch]), *emb_0.shape[1:]))
                              for s in range(0, len(z_u), cfg.sample_batch)])
        params = enable_grads(pipe, self.stage_two_names(pipe))
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_u = cfg.uncond_samples

        def loss_fn(step):
            z, t = cache["z_c"][step:step + 1], cache["t_c"][step:step + 1]
            i = cache["idx_c"][step]
            pred_n, pred_0 = unet_out(pipe.unet, torch.cat([z, z]), torch.cat([t, t]),
                                      torch.cat([emb_n[i:i + 1], emb_0])).chunk(2)
            prefer, reject = cache["prefer"][step:step + 1], cache["reject"][step:step + 1]
            target = 0.5 * (hinge(pred_n, prefer, reject, cfg.beta, cfg.margin)
                            + hinge(pred_0, prefer, reject, cfg.beta, cfg.margin))
            us = slice(step * n_u, (step + 1) * n_u)
            pred_u = unet_out(pipe.unet, z_u[us], t_u[us], emb_0.expand(n_u, *emb_0.shape[1:]))
            return target + cfg.preserve_weight * F.mse_loss(pred_u.float(), keep[us].float())

        optimise(ctx, params, opt, len(cache["idx_c"]), loss_fn, desc="trce stage 2")
