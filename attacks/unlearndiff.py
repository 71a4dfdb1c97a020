"""unlearndiff: UnlearnDiffAtk (Zhang et al., ECCV 2024), discrete prefix tokens found by the
erased model's own denoising loss.

The edited model is its own classifier: find ``k`` vocabulary tokens which, prefixed to the base
prompt, make it denoise images of the concept well,
``min_{delta in V^k} E || eps - eps_theta(sqrt(a_t) z_0 + sqrt(1 - a_t) eps, t, tau([delta; P])) ||^2``.
Each slot is a distribution over the vocabulary (uniform at the start), projected back onto the
simplex after every Adam step (lr 0.01, weight decay 0.1); the forward pass uses a one-hot token
sampled from it with a straight-through gradient. Timesteps are visited in order from high noise
to low (the authors' ``sequential`` schedule: 50 timesteps x 40 iterations on SD); after each
timestep's iterations the most likely tokens are scored on the fixed batch and the best prompt
so far is kept (the authors stop at the first success by their judge; here the judge never
guides the attack, and the budget is spent in full). The found tokens are decoded to text and
prefixed to the base prompt: the runner draws that text, as the authors do.

    eraselab attack --probe unlearndiff --concept church --prompt "a photo of a church" --out out/ud
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.base import Found, Probe
from attacks.objective import DenoisingObjective
from attacks.placeholders import PLACEHOLDER
from attacks.soft_prompt import vocabulary


@dataclass
class UnlearnDiffConfig:
    k: int = 3                # prefix tokens (authors: 3 for objects and styles, 5 for nudity)
    timesteps: int = 50       # visited high noise to low
    iterations: int = 40      # per timestep
    lr: float = 0.01
    weight_decay: float = 0.1
    batch: int = 1
    images: int = 4

    def check(self):
        if min(self.k, self.timesteps, self.iterations, self.batch, self.images) < 1 or self.lr <= 0:
            return "k, timesteps, iterations, batch and images must be positive and lr > 0"
        return None


def project_simplex(w: torch.Tensor) -> torch.Tensor:
    """Each row's Euclidean projection onto the probability simplex (sort-based, exact)."""
    u, _ = torch.sort(w, dim=1, descending=True)
    css = u.cumsum(dim=1) - 1.0
    idx = torch.arange(1, w.shape[1] + 1, device=w.device, dtype=w.dtype)
    cond = u - css / idx > 0
    rho = cond.to(w.dtype).cumsum(dim=1).argmax(dim=1, keepdim=True)  # last index where cond holds
    theta = css.gather(1, rho) / (rho + 1).to(w.dtype)
    return (w - theta).clamp(min=0)


class UnlearnDiffAtk(Probe):
    """k discrete prefix tokens on the edited model's denoising loss (text: replayable anywhere)."""

    kind = "text"
    white_box = True
    Config = UnlearnDiffConfig
    quick_overrides = {"timesteps": 2, "iterations": 2, "images": 2}

    def attack(self, ctx):
        cfg = ctx.config
        pipe = ctx.pipe
        table = pipe.text_encoder.get_input_embeddings().weight.detach().float()
        vocab = vocabulary(pipe.tokenizer, table.shape[0])
        embeddings = table[vocab]
        objective = DenoisingObjective(ctx)
        try:
            slots = " ".join([PLACEHOLDER] * cfg.k + [ctx.base_prompt])
            ids = objective.ids(slots)
            start = torch.randint(0, len(vocab), (cfg.k,), generator=ctx.generator)
            before = objective.fixed(ids, embeddings[start])
            w = torch.full((cfg.k, len(vocab)), 1.0 / len(vocab)).requires_grad_(True)
            opt = torch.optim.Adam([w], lr=cfg.lr, weight_decay=cfg.weight_decay)
            n_train = objective.scheduler.config.num_train_timesteps
            # the authors' 10, 30, ..., 990 on 1000 steps, generalised to ``timesteps`` values
            schedule = [int(round((i + 0.5) * n_train / cfg.timesteps)) for i in reversed(range(cfg.timesteps))]
            best, best_value = start, before
            total = cfg.timesteps * cfg.iterations
            with ctx.progress_bar(total) as bar:
                for j, t in enumerate(schedule):
                    for i in range(cfg.iterations):
                        with torch.no_grad():
                            pick = torch.multinomial(w.detach().clamp(min=0) + 1e-12, 1, generator=ctx.generator)[:, 0]
                        onehot = torch.nn.functional.one_hot(pick, len(vocab)).to(w.dtype)
                        vectors = (onehot + w - w.detach()) @ embeddings   # straight-through
                        index, ts = objective.sample_batch(cfg.batch, timestep=t)
                        loss = objective.loss(ids, vectors, ts, index=index)
                        ctx.check_finite(loss, j * cfg.iterations + i + 1, total)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        with torch.no_grad():
                            w.copy_(project_simplex(w))
                        bar.update(1)
                    tokens = w.detach().argmax(dim=1)
                    value = objective.fixed(ids, embeddings[tokens])
                    if value < best_value:
                        best, best_value = tokens, value
        finally:
            objective.close()
        token_ids = vocab[best].tolist()
        prefix = pipe.tokenizer.decode(token_ids).strip()
        return Found(prompt=f"{prefix} {ctx.base_prompt}".strip(), objective_before=before,
                     objective_after=best_value, steps=total,
                     extra={"tokens": token_ids, "prefix": prefix})
