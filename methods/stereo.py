"""stereo: STEREO (Srivatsan et al., CVPR 2025), search thoroughly enough, then robustly erase once.

Stage 1, STE (Search Thoroughly Enough): rounds r = 0, 1, ... of
  (1) an ESD-style erase of the current concept x_r (round 0: the concept's name; later: the
      token found in the round before, prompted alone), cumulative over rounds:
        || eps_th(z_t, x_r) - [e_x - (g - 1) (e_x - e_0)] ||^2          (g = ``negative_guidance``)
      (the authors' APG form with eta 1, no momentum and no norm threshold; the default g = 2
      makes the target e_0). e_. are the predictions of the UNet as the previous round left it
      (round 0: the original), ``iterations`` AdamW steps at ``ste_lr`` (torch's default weight
      decay, as the authors');
  (2) concept inversion on the model just erased: one new token learned by textual inversion
      (attacks/inversion.py's ``learn_token`` on attacks/objective.py's denoising objective,
      ``ti_steps`` Adam steps at ``ci_lr`` x ``ti_batch``: the harness's inversion, where the
      authors' AdamW decays the token by 1e-2 x lr a step), from the word the concept is a kind
      of, with the methods' training templates. The token enters a prompt as ``*``
      (attacks/placeholders.py); an erase prompt is the token alone.
Stage 2, REO (Robustly Erase Once): from the *original* UNet, ``iterations`` AdamW steps at
``reo_lr``; each step takes one erase concept x from {c} and the first ``num_of_adv_concepts``
tokens and one anchor prompt a (both stratified: every one equally often, shuffled) and trains
  || eps_th(z_t, x) - [e_0 + (s - 1) D_a - (s + 1) mean_k D_{x_k}] ||^2     (D_p = e_p - e_0)
with s = ``compositional_guidance_scale`` and e_. the original model's predictions; the mean runs
over every erase concept, not only the step's. The edit is REO's UNet: STE's weights and tokens
only serve to find the tokens, and are not stored.

z_t in both stages as STEREO samples it: ``ddim_steps``-step DDIM with guidance
``start_guidance`` on the step's erase prompt, run by the model being trained (one step at a
time), stopped after k ~ U{0..ddim_steps-1} steps and queried at the scheduler's timestep of step
k (the harness's one ESD-family convention, methods/esd.py's ``esd_latents``).

Choices of this port:
  * the gallery the tokens are inverted on: ``gallery_images`` images of the concept generated
    by the original model from training templates (methods/common.py's ``concept_set``; the
    authors generate theirs with SD), split into ``n_iterations`` disjoint parts, round r
    inverting on part r as the authors' data loader does. It is not the few-shot set the
    concept-inversion attack uses, so that attack stays held out;
  * the anchor prompts (the authors write scene prompts containing the concept, per concept):
    the methods' training templates filled with the concept's name, never evaluation prompts;
  * rounds after the ``num_of_adv_concepts``-th are not run: REO uses only the first tokens, so
    later rounds cannot change the edit (the authors' code runs and discards them).
Trains ``non-xattn`` (the authors' nudity setting); ``--variant`` trains another UNet subset.

    eraselab erase --method stereo --concept church --seed 0 --out out/stereo-church
"""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks.inversion import learn_token
from attacks.objective import DenoisingObjective
from attacks.placeholders import PLACEHOLDER, Placeholders
from methods.base import UnetSubsetMethod
from methods.common import (concept_set, enable_grads, encode_prompts, fill, optimise, training_scheduler,
                            training_templates, unet_out)
from methods.delta import named_tensors
from methods.esd import esd_latents
from methods.subsets import UNET, check

log = logging.getLogger("eraselab.methods")


@dataclass
class StereoConfig:
    n_iterations: int = 4                   # STE rounds
    num_of_adv_concepts: int = 4            # tokens REO erases besides the concept
    iterations: int = 200                   # AdamW steps of every STE erase and of REO
    ste_lr: float = 5e-6
    reo_lr: float = 2e-5
    negative_guidance: float = 2.0          # g of the STE target
    compositional_guidance_scale: float = 2.0  # s of the REO target
    ci_lr: float = 5e-3                     # inversion lr per image (scaled by ti_batch)
    ti_steps: int = 3000
    ti_batch: int = 1
    gallery_images: int = 500               # the authors' README: 500 SD images of the concept
    gen_steps: int = 50
    gen_guidance: float = 7.5
    ddim_steps: int = 50
    start_guidance: float = 3.0
    params: str = "non-xattn"

    def check(self):
        problem = check(self.params, UNET)
        if problem:
            return problem
        if min(self.n_iterations, self.iterations, self.ti_steps, self.ti_batch, self.ddim_steps,
               self.gen_steps) < 1:
            return "n_iterations, iterations, ti_steps, ti_batch, ddim_steps and gen_steps must be positive"
        if not 0 <= self.num_of_adv_concepts <= self.n_iterations:
            return (f"num_of_adv_concepts must be between 0 and n_iterations ({self.n_iterations}), "
                    f"got {self.num_of_adv_concepts}")
        if self.gallery_images < self.n_iterations:
            return f"gallery_images must be at least n_iterations ({self.n_iterations}): one part per round"
        if min(self.ste_lr, self.reo_lr, self.ci_lr) <= 0:
            return "ste_lr, reo_lr and ci_lr must be positive"
        if self.negative_guidance < 1 or self.compositional_guidance_scale <= 0:
            return "negative_guidance must be at least 1 and compositional_guidance_scale positive"
        return None


def ste_target(e_0, e_x, g: float):
    """STE's target: e_x - (g - 1)(e_x - e_0) (APG with eta 1, no momentum; e_0 at g = 2)."""
    return e_x - (g - 1) * (e_x - e_0)


def reo_target(e_0, e_anchor, e_erase, s: float):
    """REO's compositional target: e_0 + (s - 1) mean D_anchor - (s + 1) mean D_erase.

    ``e_anchor`` [A, ...] and ``e_erase`` [X, ...]: one prediction per anchor / erase prompt on
    the same latent; ``e_0`` [1, ...]. The negative scale -s enters as (-s - 1), as APG writes it."""
    anchor = (e_anchor - e_0).mean(0, keepdim=True)
    erase = (e_erase - e_0).mean(0, keepdim=True)
    return e_0 + (s - 1) * anchor - (s + 1) * erase


def stratified(n: int, steps: int, generator) -> list[int]:
    """``steps`` indices into n items: each item steps // n times in shuffled order, then distinct
    items for the remaining steps (the authors' balanced sampling of anchors and erase concepts)."""
    base = list(range(n)) * (steps // n)
    order = [base[i] for i in torch.randperm(len(base), generator=generator).tolist()]
    return order + torch.randperm(n, generator=generator)[:steps - len(order)].tolist()


def token_embedding(pipe, vector) -> torch.Tensor:
    """tau("*") with the token's vector in place of *: an adversarial token prompted alone."""
    with Placeholders(pipe.text_encoder, pipe.tokenizer, vector), torch.no_grad():
        return encode_prompts(pipe, [PLACEHOLDER])


def anchor_prompts(concept) -> list[str]:
    """The anchor prompts: the training templates with the concept's name (see the docstring)."""
    return [fill(t, concept.name) for t in training_templates(concept)]


@contextmanager
def no_weight_grads(params):
    """The UNet's trained weights out of autograd while a token is inverted through it."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Stereo(UnetSubsetMethod):
    """STEREO: erase / invert rounds find adversarial tokens; one compositional erase from the original."""

    Config = StereoConfig
    quick_overrides = {"n_iterations": 1, "num_of_adv_concepts": 1, "iterations": 2, "ti_steps": 2,
                       "gallery_images": 1, "gen_steps": 2, "ddim_steps": 3}

    def apply(self, ctx):
        pipe, cfg = ctx.pipe, ctx.config
        rounds = cfg.num_of_adv_concepts
        gallery = concept_set(ctx, cfg.gallery_images, cfg.gen_steps, cfg.gen_guidance)[0] if rounds else None
        names = self.trainable(pipe, cfg)
        params = enable_grads(pipe, names)
        tensors = named_tensors(pipe)
        original = ctx.snapshot or {n: tensors[n].detach().clone() for n in names}
        frozen = copy.deepcopy(pipe.unet).requires_grad_(False).eval()  # the original, for round 0
        with torch.no_grad():
            emb_c = encode_prompts(pipe, [ctx.concept.name])
        per_part = cfg.gallery_images // cfg.n_iterations
        tokens, cond = [], emb_c
        for r in range(rounds):
            if r:  # the round's frozen predictions come from the UNet the previous round erased
                frozen.load_state_dict(pipe.unet.state_dict())
            self.erase_round(ctx, frozen, params, cond, r)
            vector = self.invert(ctx, gallery[r * per_part:(r + 1) * per_part], params, r)
            tokens.append(vector)
            cond = token_embedding(pipe, vector)

        # REO from the original weights, with the original as the frozen model
        with torch.no_grad():
            for n in names:
                tensors[n].copy_(original[n])
        frozen.load_state_dict(pipe.unet.state_dict())
        erase_conds = torch.cat([emb_c] + [token_embedding(pipe, v) for v in tokens])
        self.robust_erase(ctx, frozen, params, erase_conds)

    def erase_round(self, ctx, frozen, params, cond, r: int) -> list[float]:
        """STE erase of the prompt ``cond`` against ``frozen``'s predictions; the loss history."""
        g = ctx.config.negative_guidance
        with torch.no_grad():
            emb_0 = encode_prompts(ctx.pipe, [""])

        def target(z, t):
            e_0, e_x = unet_out(frozen, torch.cat([z, z]), t, torch.cat([emb_0, cond])).chunk(2)
            return ste_target(e_0, e_x, g)

        return self._train(ctx, params, ctx.config.ste_lr, lambda step: (cond, target), f"stereo STE erase {r}")

    def invert(self, ctx, latents, params, r: int) -> torch.Tensor:
        """One new token learned on the model as it is now (just erased) from ``latents``: [1, d]."""
        cfg = ctx.config
        objective = DenoisingObjective(ctx, latents=latents)
        try:
            with no_weight_grads(params):
                token, before, after, init_word = learn_token(ctx, objective, ctx.concept, cfg.ti_steps,
                                                              cfg.ci_lr * cfg.ti_batch, cfg.ti_batch)
        finally:
            objective.close()
        log.info("stereo: round %d token from %r: inversion objective %.4g -> %.4g", r, init_word, before, after)
        return token

    def robust_erase(self, ctx, frozen, params, erase_conds) -> list[float]:
        """REO: the compositional erase of every row of ``erase_conds`` against ``frozen``."""
        pipe, cfg = ctx.pipe, ctx.config
        with torch.no_grad():
            emb_0 = encode_prompts(pipe, [""])
            anchors = encode_prompts(pipe, anchor_prompts(ctx.concept))
        which_x = stratified(len(erase_conds), cfg.iterations, ctx.generator)
        which_a = stratified(len(anchors), cfg.iterations, ctx.generator)
        s = cfg.compositional_guidance_scale

        def pick(step):
            anchor = anchors[which_a[step]:which_a[step] + 1]

            def target(z, t):
                conds = torch.cat([emb_0, anchor, erase_conds])
                e = unet_out(frozen, z.expand(len(conds), *z.shape[1:]), t, conds)
                return reo_target(e[:1], e[1:2], e[2:], s)

            return erase_conds[which_x[step]:which_x[step] + 1], target

        return self._train(ctx, params, cfg.reo_lr, pick, "stereo REO")

    def _train(self, ctx, params, lr: float, pick, desc: str) -> list[float]:
        """``iterations`` AdamW steps of || eps_th(z_t, x) - target(z_t, t) ||^2, where
        ``pick(step) -> (x's embedding, target)`` and z_t is sampled on x by the model trained."""
        pipe, cfg = ctx.pipe, ctx.config
        scheduler = training_scheduler(pipe)
        with torch.no_grad():
            emb_0 = encode_prompts(pipe, [""])
        size = pipe.unet.config.sample_size
        shape = (1, pipe.unet.config.in_channels, size, size)

        def loss_fn(step):
            cond, target = pick(step)
            z, t, _ = esd_latents(pipe.unet, scheduler, cond, emb_0, cfg.ddim_steps, cfg.start_guidance,
                                  1, ctx.generator, shape)
            with torch.no_grad():
                goal = target(z, t[0])
            return F.mse_loss(unet_out(pipe.unet, z, t[0], cond).float(), goal.float())

        opt = torch.optim.AdamW(params, lr=lr)
        return optimise(ctx, params, opt, cfg.iterations, loss_fn, desc=desc)
