"""concept-inversion: textual inversion of a new token on the edited model (Pham et al., ICLR 2024,
"Circumventing Concept Erasure Methods For Text-to-Image Generative Models").

Learns one new token embedding ``w*`` with the plain textual-inversion loss on the edited model,
``min_w E || eps - eps_theta(z_t, t, tau(template("*"))) ||^2`` over images of the concept and the
methods' training templates (never the evaluation ones), starting from the embedding of a word
the concept is a kind of (its parent, else "object" / "painting"). The base prompt is then drawn
with the concept's name replaced by the token. Authors: batch 4 x 4 accumulation, lr 5e-3 scaled
by the batch (0.08), 5000 steps, 25 images of the concept; only the edited model the token was
learned on is attacked with it.

    eraselab attack --probe concept-inversion --concept church --prompt "a photo of a church" --out out/ci
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.base import Found, Probe
from attacks.objective import DenoisingObjective, optimise_vectors
from attacks.placeholders import PLACEHOLDER
from methods.common import fill, generic_word, tokenize, training_templates


@dataclass
class InversionConfig:
    steps: int = 5000
    lr: float = 0.08       # 5e-3 x batch 16 (the authors' --scale_lr)
    batch: int = 16
    images: int = 25

    def check(self):
        if min(self.steps, self.batch, self.images) < 1 or self.lr <= 0:
            return "steps, batch and images must be positive and lr > 0"
        return None


def token_prompt(base_prompt: str, name: str) -> str:
    """The base prompt with the concept's name replaced by the learned token (prefixed if absent)."""
    lowered = base_prompt.lower()
    at = lowered.find(name.lower())
    if at < 0:
        return f"{PLACEHOLDER} {base_prompt}"
    return base_prompt[:at] + PLACEHOLDER + base_prompt[at + len(name):]


class ConceptInversion(Probe):
    """A new token learned by textual inversion on the edited model."""

    kind = "embedding"
    white_box = True
    Config = InversionConfig
    quick_overrides = {"steps": 3, "batch": 2, "images": 2}

    def attack(self, ctx):
        cfg, concept = ctx.config, ctx.concept
        objective = DenoisingObjective(ctx)
        try:
            prompt = token_prompt(ctx.base_prompt, concept.name)
            token, before, after, init_word = learn_token(ctx, objective, concept, cfg.steps, cfg.lr, cfg.batch)
        finally:
            objective.close()
        return Found(prompt=prompt, vectors=token, objective_before=before, objective_after=after,
                     steps=cfg.steps, extra={"init_word": init_word})


def learn_token(ctx, objective: DenoisingObjective, concept, steps: int, lr: float, batch: int):
    """Textual inversion of one new token on ``objective``'s model and images: from the first
    token of the word the concept is a kind of (its parent, else "object" / "painting"), a
    training template with the token drawn per step. Returns (token [1, d], the objective on its
    fixed batch before and after, the initial word); the fixed batch uses the first template."""
    pipe = ctx.pipe
    init_word = concept.parent or generic_word(concept)
    with torch.no_grad():
        init_ids = tokenize(pipe, [init_word])[0]
        table = pipe.text_encoder.get_input_embeddings()
        start = table(init_ids[1:2]).detach().clone().float()  # its first token's embedding
    templates = [fill(t, PLACEHOLDER) for t in training_templates(concept)]
    template_ids = torch.cat([objective.ids(t) for t in templates])
    fixed_ids = objective.ids(templates[0])
    before = objective.fixed(fixed_ids, start)
    # a training template drawn per step, with the generator every other draw uses
    which = [int(torch.randint(0, len(templates), (1,), generator=ctx.generator)) for _ in range(steps)]
    token = optimise_vectors(ctx, objective, start, steps, lr, batch,
                             lambda step: template_ids[which[step]:which[step] + 1])
    after = objective.fixed(fixed_ids, token)
    return token, before, after, init_word
