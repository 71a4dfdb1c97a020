"""adavd: Adaptive Value Decomposer (Wang et al., CVPR 2025), an inference-time projection of the
cross-attention values away from the concept's.

The target values: the concept's prompt encoded with its last real token's output copied into
every end-of-text and padding position, passed through each ``attn2.to_v`` (t_j per position j
and head). While sampling, every value v_j the prompt produces loses its component along t_j in
proportion to how much it looks like the concept:

  v'_j = v_j - w_j t_j,  w_j = S(cos(t_j, v_j)) (v_j . t_j) / (t_j . t_j),  S(x) = c / (1 + exp(-a (x - b)))

per head, with a = 100, b = 0.93, c = 2 (the authors'), w_0 = 0 (the start token is left alone),
on both halves of the guidance batch and at every step (the authors' ``decomp_timestep`` 0). No
weights change; anyone with the weights can drop the hook. One concept per spec: sequential
AdaVD edits apply one projection after the other (the authors' multi-concept form, an orthogonal
basis of several concepts' values, is not built).

    eraselab erase --method adavd --concept "van gogh" --seed 0 --out out/adavd-vg
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from bench.core.errors import EraselabError
from methods.base import ErasureMethod
from methods.common import encode_ids, tokenize


@dataclass
class AdaVdConfig:
    sharpness: float = 100.0   # a
    threshold: float = 0.93    # b
    strength: float = 2.0      # c

    def check(self):
        if self.sharpness <= 0 or self.strength < 0:
            return "sharpness must be positive and strength at least 0"
        return None


@torch.no_grad()
def target_embedding(pipe, concept: str) -> torch.Tensor:
    """tau(concept) with the last real token's output copied into every later position (1, L, d)."""
    ids = tokenize(pipe, [concept])
    hidden = encode_ids(pipe.text_encoder, ids).clone()
    end = int((ids[0] == pipe.tokenizer.eos_token_id).nonzero()[0])
    last = max(end - 1, 1)
    hidden[0, last + 1:] = hidden[0, last]
    return hidden


def project(values: torch.Tensor, target: torch.Tensor, heads: int, cfg) -> torch.Tensor:
    """AdaVD's rule on ``values`` (B, L, inner) against ``target`` (1, L, inner), per head."""
    b, length, inner = values.shape
    v = values.float().view(b, length, heads, inner // heads)
    t = target.float().view(1, length, heads, inner // heads)
    dot = (v * t).sum(-1, keepdim=True)
    tt = (t * t).sum(-1, keepdim=True).clamp(min=1e-12)
    cosine = dot / (v.norm(dim=-1, keepdim=True) * tt.sqrt()).clamp(min=1e-12)
    weight = cfg["strength"] * torch.sigmoid(cfg["sharpness"] * (cosine - cfg["threshold"])) * dot / tt
    weight[:, 0] = 0  # the start token
    return (v - weight * t).view(b, length, inner).to(values.dtype)


class AdaVd(ErasureMethod):
    """AdaVD: remove the concept's direction from cross-attention values while sampling."""

    Config = AdaVdConfig
    inference_time = True

    def inference_spec(self, ctx):
        cfg = ctx.config
        return {"method": self.name, "concept": ctx.concept.name, "sharpness": cfg.sharpness,
                "threshold": cfg.threshold, "strength": cfg.strength}

    @classmethod
    def sampling_hooks(cls, pipe, spec, tensors, call):
        target = target_embedding(pipe, spec["concept"])
        layers = [(name, module) for name, module in pipe.unet.named_modules() if name.endswith("attn2")]
        with torch.no_grad():
            targets = {name: module.to_v(target.to(module.to_v.weight.dtype)) for name, module in layers}

        def hook_for(name, heads):
            def hook(module, inputs, output):
                if output.shape[1] != targets[name].shape[1]:
                    raise EraselabError(f"adavd: {name} sees {output.shape[1]} text tokens; the target "
                                        f"has {targets[name].shape[1]}")
                return project(output, targets[name], heads, spec)
            return hook

        @contextmanager
        def hooks():
            handles = [module.to_v.register_forward_hook(hook_for(name, module.heads)) for name, module in layers]
            try:
                yield
            finally:
                for handle in handles:
                    handle.remove()
        return hooks()
