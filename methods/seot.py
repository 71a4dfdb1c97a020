"""seot: SuppressEOT (Li et al., ICLR 2024), inference-time suppression of the concept in the
prompt's own text embedding.

For each prompt that contains the concept's tokens, the conditional embedding's columns chi =
[the concept's token embeddings; every end-of-text and padding embedding] are rewritten with
soft-weighted singular values, chi = U S V^T -> U S' V^T with s' = s exp(-alpha s) (alpha = 1,
the authors'), which suppresses the main, concept-carrying directions. The suppressed embedding is
used from step round(``start`` x steps) on (the authors' 10 of 50, start 0.2); the unconditional
half of the guidance batch is untouched. A prompt without the concept's tokens is left alone:
SEOT needs the word in the prompt, so paraphrases and attacks without it pass through (the
benchmark measures that). The authors' optional inference-time optimisation (ITO) on attention
maps is not built (their generated results use SWR alone, ``--iter_each_step 0``).

    eraselab erase --method seot --concept "van gogh" --seed 0 --out out/seot-vg
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from methods.base import ErasureMethod
from methods.common import token_span, tokenize


@dataclass
class SeotConfig:
    alpha: float = 1.0
    start: float = 0.2     # the share of steps that use the prompt's own embedding first

    def check(self):
        if self.alpha < 0 or not 0 <= self.start < 1:
            return "alpha must be at least 0 and start in [0, 1)"
        return None


def suppress(embedding: torch.Tensor, positions: list[int], eot: int, alpha: float) -> torch.Tensor:
    """SEOT's soft-weighted regularisation of one prompt's embedding (L, d)."""
    columns = positions + list(range(eot, embedding.shape[0]))
    chi = embedding[columns].float().T  # (d, k)
    u, s, vh = torch.linalg.svd(chi, full_matrices=False)
    out = embedding.clone()
    out[columns] = ((u * (s * torch.exp(-alpha * s))) @ vh).T.to(embedding.dtype)
    return out


class Seot(ErasureMethod):
    """SuppressEOT: the concept and end-of-text embeddings' main directions suppressed per prompt."""

    Config = SeotConfig
    inference_time = True
    quick_overrides = {"start": 0.0}  # 2 sampling steps: the authors' start would leave one

    def inference_spec(self, ctx):
        return {"method": self.name, "concept": ctx.concept.name, "alpha": ctx.config.alpha,
                "start": ctx.config.start}

    @classmethod
    def sampling_hooks(cls, pipe, spec, tensors, call):
        if not call.prompts:
            return None
        tokenizer = pipe.tokenizer
        concept_ids = tokenizer(spec["concept"]).input_ids[1:-1]
        ids = tokenize(pipe, call.prompts)
        eos = tokenizer.eos_token_id
        found = []  # per image: (positions, end-of-text index) or None
        for row in ids.tolist():
            positions = token_span(row, concept_ids)
            found += [(positions, row.index(eos)) if positions else None] * call.images_per_prompt
        if not any(found):
            return None
        first_step = round(spec["start"] * call.steps)
        n = len(found)
        state = {"calls": 0}

        def pre_hook(module, args, kwargs):
            step = state["calls"]
            state["calls"] += 1
            embeds = kwargs.get("encoder_hidden_states")
            if step < first_step or embeds is None or embeds.shape[0] not in (n, 2 * n, 3 * n):
                return None
            start = 0 if embeds.shape[0] == n else n  # the conditional half (after the negatives)
            new = embeds.clone()
            for i, hit in enumerate(found):
                if hit is not None:
                    new[start + i] = suppress(embeds[start + i], hit[0], hit[1], spec["alpha"])
            return args, {**kwargs, "encoder_hidden_states": new}

        @contextmanager
        def hooks():
            handle = pipe.unet.register_forward_pre_hook(pre_hook, with_kwargs=True)
            try:
                yield
            finally:
                handle.remove()
        return hooks()
