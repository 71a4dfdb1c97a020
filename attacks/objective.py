"""The white-box attacks' shared objective: the edited model's denoising loss on concept images.

UnlearnDiffAtk, the soft-prompt attack and concept inversion all ask the same question of the
edited model: which conditioning makes it denoise images of the erased concept well? Here the
concept's images are encoded once, and the loss ``|| target - eps_theta(z_t, t, tau(prompt)) ||^2``
is evaluated with the prompt's ``*`` positions filled by the attack's vectors
(attacks/placeholders.py); P4D's target is another model's prediction (``teacher``) instead. ``fixed`` evaluates it on one seeded batch (every image at a few
spread timesteps with fixed noise), so that the objective before and after an attack compare
like with like.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks.placeholders import Placeholders
from methods.common import (encode_ids, images_to_latents, prediction_target, randn, tokenize,
                            training_scheduler, unet_out)

FIXED_TIMESTEPS = 4


class DenoisingObjective:
    def __init__(self, ctx, teacher=None, latents=None):
        """``teacher = (unet, cond)``: the target is that model's prediction under ``cond``
        (P4D's original-model target) instead of the images' noise. ``latents``: images already
        in the UNet's latent space (a gallery a method generated) instead of ``ctx.images``."""
        import random
        self.ctx, self.teacher = ctx, teacher
        pipe = ctx.pipe
        self.pipe, self.unet, self.text_encoder = pipe, pipe.unet, pipe.text_encoder
        self.scheduler = training_scheduler(pipe)
        if latents is not None:
            self.latents = latents.detach()
        else:
            with torch.no_grad():
                self.latents = images_to_latents(pipe, ctx.images, ctx.generator, random.Random(ctx.seed))
        self.slots = Placeholders(self.text_encoder, pipe.tokenizer)
        n_train = self.scheduler.config.num_train_timesteps
        fixed_gen = torch.Generator("cpu").manual_seed(10_007 + ctx.seed)
        self.fixed_t = torch.linspace(n_train * 0.1, n_train * 0.9, FIXED_TIMESTEPS).long()
        self.fixed_noise = [randn(self.latents.shape, fixed_gen, self.latents) for _ in self.fixed_t]

    def ids(self, prompt: str) -> torch.Tensor:
        return tokenize(self.pipe, [prompt])

    def loss(self, ids, vectors, timesteps: torch.Tensor, noise=None, index=None) -> torch.Tensor:
        """Mean denoising loss over the images ``index`` (default all) at ``timesteps`` (one per image)."""
        z0 = self.latents if index is None else self.latents[index]
        if noise is None:
            noise = randn(z0.shape, self.ctx.generator, z0)
        t = timesteps.to(z0.device)
        noisy = self.scheduler.add_noise(z0, noise, t)
        if self.teacher is None:
            target = prediction_target(self.scheduler, z0, noise, t)
        else:
            unet0, cond0 = self.teacher
            with torch.no_grad():
                target = unet_out(unet0, noisy, t, cond0.expand(len(z0), -1, -1))
        self.slots.vectors = vectors
        try:
            cond = encode_ids(self.text_encoder, ids).expand(len(z0), -1, -1)
            return F.mse_loss(unet_out(self.unet, noisy, t, cond).float(), target.float())
        finally:
            self.slots.vectors = None

    def sample_batch(self, batch: int, timestep: int | None = None):
        """(image indices, timesteps): ``batch`` images drawn with replacement, a timestep each
        (``timestep`` for all, or uniform over the training schedule)."""
        n = len(self.latents)
        index = torch.randint(0, n, (batch,), generator=self.ctx.generator)
        if timestep is None:
            t = torch.randint(0, self.scheduler.config.num_train_timesteps, (batch,), generator=self.ctx.generator)
        else:
            t = torch.full((batch,), int(timestep), dtype=torch.long)
        return index, t

    @torch.no_grad()
    def fixed(self, ids, vectors) -> float:
        """The objective on the fixed batch: every image at FIXED_TIMESTEPS timesteps."""
        losses = [self.loss(ids, vectors, torch.full((len(self.latents),), int(t)), noise=eps)
                  for t, eps in zip(self.fixed_t, self.fixed_noise)]
        return float(torch.stack(losses).mean())

    def close(self) -> None:
        self.slots.remove()


def optimise_vectors(ctx, objective: DenoisingObjective, start, steps: int, lr: float, batch: int,
                     ids_at) -> torch.Tensor:
    """Adam on vectors from ``start`` for ``steps`` steps of the objective on ``batch`` images at
    uniform timesteps, the prompt's ids at each step given by ``ids_at(step)``; returns them."""
    vectors = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([vectors], lr=lr)
    with ctx.progress_bar(steps) as bar:
        for step in range(steps):
            index, t = objective.sample_batch(batch)
            loss = objective.loss(ids_at(step), vectors, t, index=index)
            ctx.check_finite(loss, step + 1, steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
    return vectors.detach()
