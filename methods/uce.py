"""uce: Unified Concept Editing (Gandikota et al. 2024), a closed-form edit with no training.

For every cross-attention projection W in {attn2.to_k, attn2.to_v} (W0 its original):

  W = (lam W0 + s_e sum_i (W0 g_i) c_i^T + s_p sum_j (W0 c_j) c_j^T)
      (lam I + s_e sum_i c_i c_i^T + s_p sum_j c_j c_j^T)^-1

the minimiser of lam ||W - W0||^2 + s_e sum_i ||W c_i - W0 g_i||^2 + s_p sum_j ||W c_j - W0 c_j||^2
(c_i: the concept's text embeddings, g_i: its guide's -- "" for objects, "art" for styles --, c_j:
concepts to preserve, by default the catalog's ``related``). Solved in float32.

Embeddings (``embedding``): ``last-token`` (newer code) uses one vector per prompt, the encoder
output at the last real token (the token before end-of-text; for the empty guide, which has no real
token, the end-of-text token); ``all-tokens`` (paper era) pairs every position from the first
subject token through the padding.

    eraselab erase --method uce --concept "van gogh" --seed 0 --out out/uce-vg
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import ErasureMethod
from methods.delta import named_tensors
from methods.common import encode_ids, tokenize


def uce_closed_form(W0: torch.Tensor, erase: torch.Tensor, guide: torch.Tensor,
                    preserve: torch.Tensor | None, lam: float, s_e: float, s_p: float) -> torch.Tensor:
    """The UCE update of one projection. ``erase``/``guide``: (n, d_in) rows c_i / g_i;
    ``preserve``: (m, d_in) rows c_j or None. Returns W (float32, W0's shape)."""
    W0 = W0.float()
    erase, guide = erase.float(), guide.float()
    return mapped_closed_form(W0, erase, (W0 @ guide.T).T, preserve, None, lam, s_e, s_p)


def mapped_closed_form(W0: torch.Tensor, inputs: torch.Tensor, outputs: torch.Tensor,
                       preserve: torch.Tensor | None, preserve_outputs: torch.Tensor | None,
                       lam: float, s_e: float, s_p: float) -> torch.Tensor:
    """The minimiser of lam ||W - W0||^2 + s_e sum_i ||W x_i - y_i||^2 + s_p sum_j ||W p_j - q_j||^2:

      W = (lam W0 + s_e sum_i y_i x_i^T + s_p sum_j q_j p_j^T)(lam I + s_e sum_i x_i x_i^T + s_p sum_j p_j p_j^T)^-1

    ``inputs``/``outputs``: (n, d_in) rows x_i / (n, d_out) rows y_i (UCE: y_i = W0 g_i);
    ``preserve``: (m, d_in) rows p_j or None; ``preserve_outputs``: (m, d_out) rows q_j, None for
    W0 p_j. Returns W (float32, W0's shape)."""
    W0 = W0.float()
    inputs, outputs = inputs.float(), outputs.float()
    d_in = W0.shape[1]
    A = lam * torch.eye(d_in, dtype=torch.float32, device=W0.device) + s_e * inputs.T @ inputs
    B = lam * W0 + s_e * outputs.T @ inputs
    if preserve is not None and preserve.shape[0]:
        preserve = preserve.float()
        A = A + s_p * preserve.T @ preserve
        kept = W0 @ preserve.T if preserve_outputs is None else preserve_outputs.float().T
        B = B + s_p * kept @ preserve
    # W A = B with A symmetric positive definite (lam > 0, or full-rank rows): solve A W^T = B^T.
    return torch.linalg.solve(A, B.T).T


@dataclass
class UceConfig:
    lam: float = 0.5
    erase_scale: float = 1.0
    preserve_scale: float = 1.0
    embedding: str = "last-token"         # or "all-tokens" (paper era)
    guide: str | None = None              # None: "" for objects, "art" for styles
    preserve: tuple[str, ...] | None = None  # None: the catalog's related concepts

    def check(self):
        if self.lam <= 0:
            return "lam must be positive (it keeps the system solvable)"
        if self.embedding not in ("last-token", "all-tokens"):
            return f"embedding must be 'last-token' or 'all-tokens', got {self.embedding!r}"
        return None


@torch.no_grad()
def prompt_vectors(pipe, prompts: list[str], mode: str) -> list[torch.Tensor]:
    """Per prompt, the embedding rows UCE uses (see the module docstring)."""
    ids = tokenize(pipe, prompts)
    hidden = encode_ids(pipe.text_encoder, ids)
    eos = pipe.tokenizer.eos_token_id
    out = []
    for row_ids, row in zip(ids, hidden):
        if mode == "all-tokens":
            out.append(row[1:])  # subject through padding, position-aligned across prompts
            continue
        end = int((row_ids == eos).nonzero()[0])
        out.append(row[end - 1 if end > 1 else end][None])
    return out


class Uce(ErasureMethod):
    """Unified Concept Editing: closed-form update of attn2.to_k / attn2.to_v."""

    Config = UceConfig
    subset = "xattn-kv"

    def trainable(self, pipe, config):
        # the closed form is for the projection matrices (SD's to_k / to_v have no bias)
        return [n for n in super().trainable(pipe, config) if n.endswith(".weight")]

    @torch.no_grad()
    def apply(self, ctx):
        pipe, cfg, concept = ctx.pipe, ctx.config, ctx.concept
        guide = cfg.guide if cfg.guide is not None else ("art" if concept.is_style else "")
        preserve = list(cfg.preserve) if cfg.preserve is not None else list(concept.related)
        preserve = [p for p in preserve if p != concept.name]
        vecs = prompt_vectors(pipe, [concept.name, guide] + preserve, cfg.embedding)
        erase_rows, guide_rows = vecs[0], vecs[1]
        preserve_rows = torch.cat(vecs[2:]) if preserve else None
        tensors = named_tensors(pipe)
        names = self.trainable(pipe, cfg)
        with ctx.progress_bar(len(names), "uce layers") as bar:
            for name in names:
                W = tensors[name]
                new = uce_closed_form(W.detach(), erase_rows, guide_rows, preserve_rows,
                                      cfg.lam, cfg.erase_scale, cfg.preserve_scale)
                if not torch.isfinite(new).all():
                    from bench.core.errors import EraselabError
                    raise EraselabError(f"uce: the solve for {name} is not finite; raise lam")
                W.copy_(new.to(W.dtype))
                bar.update(1)
