"""safree: SAFREE (Yoon et al., ICLR 2025), a training-free guard on the prompt's embedding.

The concept subspace: the pooled text embeddings (``pooler_output``) of the concept's keywords
(the concept's name here; the authors list 17 phrases for nudity and the name for an artist),
P_C = C (C^T C)^+ C^T. For each real token i of a prompt, the prompt with token i masked (id 0)
is pooled, p_i; token i triggers when ||(I - P_C) p_i|| >= (1 + alpha) x the mean of the other
tokens' distances (masking it moves the prompt away from the concept). Trigger tokens' encoder
outputs are projected, e_i <- (I - P_C) P_M e_i (P_M: the projector onto the masked prompts'
span); the other tokens are kept. The self-validating filter uses the projected embedding for
the first round(s x sigmoid(2k (10 beta - t0))) steps, s = 10 of 50 steps (scaled to the call's
steps), beta = 1 - mean_i cos(e'_i, e_i) over every real token projected, (t0, k) = (5.5, 3.5)
for styles and (5.333, 2.5) otherwise (the authors' artist and nudity values). The latent
re-attention is FreeU on the UNet's up-block skip features (diffusers' ``enable_freeu``; b1 = b2
= 1.0, s1 = 0.9, s2 = 0.2) for the whole call. A prompt without a trigger token is untouched.

The authors' code also passes the keywords as the negative prompt; that conflates SAFREE with
plain negative prompting, so it is a variant: ``keywords`` (the code's behaviour, default) or
``none`` (SAFREE alone), both reportable.

    eraselab erase --method safree --variant none --concept "van gogh" --seed 0 --out out/safree-vg
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from methods.base import ErasureMethod
from methods.common import tokenize

NEGATIVES = ("keywords", "none")


@dataclass
class SafreeConfig:
    negative: str = "keywords"     # the concept's keywords as the negative prompt, or none
    alpha: float = 0.01
    filter_steps: float = 0.2      # s: at most this share of the steps use the projection
    freeu: bool = True

    def check(self):
        if self.negative not in NEGATIVES:
            return f"negative must be one of {', '.join(NEGATIVES)}, got {self.negative!r}"
        if self.alpha < 0 or not 0 <= self.filter_steps <= 1:
            return "alpha must be at least 0 and filter_steps in [0, 1]"
        return None


def projector(rows: torch.Tensor) -> torch.Tensor:
    """The orthogonal projector onto the span of ``rows`` (n, d): R^T (R R^T)^+ R."""
    rows = rows.float()
    return rows.T @ torch.linalg.pinv(rows @ rows.T) @ rows


@torch.no_grad()
def pooled(text_encoder, ids: torch.Tensor) -> torch.Tensor:
    return text_encoder(ids)[1].float()


@torch.no_grad()
def guard(pipe, keywords: list[str], prompts: list[str], alpha: float, style: bool):
    """Per prompt: (projected encoder outputs, number of steps to use them of 50) or None."""
    text_encoder, tokenizer = pipe.text_encoder, pipe.tokenizer
    concept = pooled(text_encoder, tokenize(pipe, keywords))
    outside = torch.eye(concept.shape[1], device=concept.device) - projector(concept)
    t0, k = (5.5, 3.5) if style else (5.333, 2.5)
    out = []
    for ids in tokenize(pipe, prompts):
        end = int((ids == tokenizer.eos_token_id).nonzero()[0])
        real = list(range(1, end))
        if len(real) < 2:
            out.append(None)
            continue
        masked = ids.repeat(len(real), 1)
        for row, i in enumerate(real):
            masked[row, i] = 0
        p = pooled(text_encoder, masked)
        distance = (p @ outside.T).norm(dim=1)
        others = (distance.sum() - distance) / (len(real) - 1)
        triggers = [i for i, d, o in zip(real, distance, others) if d >= (1 + alpha) * o]
        if not triggers:
            out.append(None)
            continue
        states = text_encoder(ids[None])[0][0].float()
        transform = outside @ projector(p)
        projected_all = states[real] @ transform.T
        beta = 1 - torch.nn.functional.cosine_similarity(projected_all, states[real], dim=1).mean()
        new = states.clone()
        new[triggers] = states[triggers] @ transform.T
        steps = round(10 * (1 / (1 + math.exp(-2 * k * (10 * float(beta) - t0)))))
        out.append((new, steps))
    return out


class Safree(ErasureMethod):
    """SAFREE: trigger tokens projected out of the concept's subspace for the early steps, FreeU."""

    Config = SafreeConfig
    inference_time = True
    variants = NEGATIVES
    variant_field = "negative"

    def inference_spec(self, ctx):
        cfg = ctx.config
        spec = {"method": self.name, "concept": ctx.concept.name, "keywords": [ctx.concept.name],
                "style": ctx.concept.is_style, "alpha": cfg.alpha, "filter_steps": cfg.filter_steps,
                "freeu": cfg.freeu}
        if cfg.negative == "keywords":
            spec["negative"] = ", ".join(spec["keywords"])
        return spec

    @classmethod
    def sampling_hooks(cls, pipe, spec, tensors, call):
        guarded = guard(pipe, spec["keywords"], call.prompts, spec["alpha"], spec["style"]) if call.prompts else []
        per_image = [g for g in guarded for _ in range(call.images_per_prompt)]
        n = len(per_image)
        scale = spec["filter_steps"] * call.steps / 10  # the authors' count is of 10 in 50 steps
        state = {"calls": 0}

        def pre_hook(module, args, kwargs):
            step = state["calls"]
            state["calls"] += 1
            embeds = kwargs.get("encoder_hidden_states")
            if embeds is None or embeds.shape[0] not in (n, 2 * n, 3 * n):
                return None
            start = 0 if embeds.shape[0] == n else n
            rows = [i for i, g in enumerate(per_image) if g is not None and step < round(g[1] * scale)]
            if not rows:
                return None
            new = embeds.clone()
            for i in rows:
                new[start + i] = per_image[i][0].to(embeds.dtype)
            return args, {**kwargs, "encoder_hidden_states": new}

        @contextmanager
        def hooks():
            handle = pipe.unet.register_forward_pre_hook(pre_hook, with_kwargs=True) if n else None
            if spec["freeu"]:
                pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.0, b2=1.0)
            try:
                yield
            finally:
                if handle is not None:
                    handle.remove()
                if spec["freeu"]:
                    pipe.disable_freeu()
        return hooks()
