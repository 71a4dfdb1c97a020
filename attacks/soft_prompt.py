"""soft-prompt: the continuous prefix attack AdvUnlearn trains against (Zhang et al., NeurIPS 2024).

Optimises ``k`` continuous token embeddings prefixed to the base prompt ("* {prompt}", the
vectors entering the text encoder where its token embeddings do) so that the edited model
denoises images of the concept well: ``min_delta E || eps - eps_theta(z_t, t, tau([delta; P])) ||^2``.
AdvUnlearn's own inner attack matches the frozen model's prediction instead; as a probe against
a fixed edited model the concept's images are the target (no original model is needed), which
is UnlearnDiffAtk's objective without the discrete constraint. Init: the embeddings of ``k``
seeded random vocabulary tokens. Authors: 1 vector, 30 Adam steps, lr 1e-3. No text carries
the found vectors: results are reported apart from text attacks.

    eraselab attack --probe soft-prompt --concept church --prompt "a photo of a church" --out out/soft
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.base import Found, Probe
from attacks.objective import DenoisingObjective, optimise_vectors
from attacks.placeholders import PLACEHOLDER


@dataclass
class SoftPromptConfig:
    k: int = 1            # prefix vectors
    steps: int = 30
    lr: float = 1e-3
    batch: int = 1        # images per step
    images: int = 4       # concept images the attack sees

    def check(self):
        if self.k < 1 or self.steps < 1 or self.lr <= 0 or self.batch < 1 or self.images < 1:
            return "k, steps, batch and images must be positive and lr > 0"
        return None


def vocabulary(tokenizer, table_rows: int) -> torch.Tensor:
    """Token ids an attack may use: the tokenizer's, without special tokens or the placeholder."""
    from attacks.placeholders import placeholder_id
    banned = set(tokenizer.all_special_ids) | {placeholder_id(tokenizer)}
    return torch.tensor([i for i in range(min(len(tokenizer), table_rows)) if i not in banned])


def random_token_embeddings(pipe, k: int, generator) -> torch.Tensor:
    table = pipe.text_encoder.get_input_embeddings().weight
    vocab = vocabulary(pipe.tokenizer, table.shape[0])
    pick = vocab[torch.randint(0, len(vocab), (k,), generator=generator)]
    return table[pick].detach().clone().float()


class SoftPrompt(Probe):
    """A continuous prefix embedding optimised on the edited model's denoising loss."""

    kind = "embedding"
    white_box = True
    Config = SoftPromptConfig
    quick_overrides = {"steps": 3, "images": 2}

    def attack(self, ctx):
        cfg = ctx.config
        objective = DenoisingObjective(ctx)
        try:
            prompt = " ".join([PLACEHOLDER] * cfg.k + [ctx.base_prompt])
            ids = objective.ids(prompt)
            start = random_token_embeddings(ctx.pipe, cfg.k, ctx.generator)
            before = objective.fixed(ids, start)
            delta = optimise_vectors(ctx, objective, start, cfg.steps, cfg.lr, cfg.batch, lambda step: ids)
            after = objective.fixed(ids, delta)
        finally:
            objective.close()
        return Found(prompt=prompt, vectors=delta, objective_before=before, objective_after=after,
                     steps=cfg.steps)
