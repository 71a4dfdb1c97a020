"""conceptprune: ConceptPrune (Chavhan et al., ICLR 2025), training-free pruning of "skilled
neurons" in the UNet's feed-forward output layers.

For paired prompts that differ only by the concept (objects and instances: "a {scene}" vs
"a {concept} in a {scene}"; styles: "a {thing}" vs "a {thing} in the style of {concept}"), the
pipeline samples both with the same seeds while hooks record the inputs X of every ``ff.net.2``
(the GEGLU outputs) during the first ``first_steps`` denoising steps. Per step and layer, the
Wanda score of weight (i, j) is S_ij = |W_ij| * ||X_:,j||_2 (each token's row of X L2-normalised
first, the column norm over tokens, averaged over the prompts; the conditional half of the
guidance batch, since the unconditional half is the same for both prompts of a pair). Row i's
skilled weights are its top ``skill_ratio`` x in_dim columns by the concept prompts' score that
also score higher than on the base prompts; the union over the recorded steps is set to zero.

The prompt lists are fixed below (generic scenes and things, never catalog or evaluation
prompts). The authors' skill ratio is 0.01 for artists and 0.02 for church and garbage truck;
0.02 is the default here for every type.

    eraselab erase --method conceptprune --concept church --seed 0 --out out/cp-church
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import ErasureMethod
from methods.common import quiet_progress
from methods.delta import named_tensors

SCENES = ("room", "street", "field", "kitchen", "beach", "forest", "garden", "desert", "park", "city square")
THINGS = ("house", "tree", "boat", "mountain", "flower", "bridge", "horse", "lake", "chair", "portrait")


@dataclass
class ConceptPruneConfig:
    skill_ratio: float = 0.02
    pairs: int = 10
    sample_steps: int = 50
    first_steps: int = 10       # the early steps whose scores select (tau)
    guidance: float = 7.5

    def check(self):
        if not 0 < self.skill_ratio < 1:
            return "skill_ratio must be in (0, 1)"
        if not 1 <= self.pairs <= len(SCENES):
            return f"pairs must be between 1 and {len(SCENES)}"
        if not 1 <= self.first_steps <= self.sample_steps:
            return "first_steps must be between 1 and sample_steps"
        return None


def prompt_pairs(concept, n: int) -> tuple[list[str], list[str]]:
    """(base prompts, concept prompts) of ``concept``, ``n`` each, paired by position."""
    if concept.is_style:
        things = THINGS[:n]
        return [f"a {t}" for t in things], [f"a {t} in the style of {concept.name}" for t in things]
    scenes = SCENES[:n]
    return [f"a {s}" for s in scenes], [f"a {concept.name} in a {s}" for s in scenes]


@torch.no_grad()
def column_norms(pipe, prompts: list[str], cfg: ConceptPruneConfig, seed: int, layers: dict) -> dict:
    """(layer name, step) -> mean over prompts of ||X_:,j|| per input column j of that layer."""
    step = {"i": 0}
    sums: dict = {}
    n = len(prompts)

    def hook_for(name):
        def hook(module, inputs):
            if step["i"] >= cfg.first_steps:
                return
            x = inputs[0].float()
            x = x[-n:] if x.shape[0] == 2 * n else x   # the conditional half of the guidance batch
            x = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            key = (name, step["i"])
            sums[key] = sums.get(key, 0) + x.norm(dim=1).mean(0)
        return hook

    def after_step(pipeline, i, t, kwargs):
        step["i"] = i + 1
        if step["i"] >= cfg.first_steps:
            pipeline._interrupt = True  # the later steps select nothing: skip them
        return kwargs

    handles = [layer.register_forward_pre_hook(hook_for(name)) for name, layer in layers.items()]
    try:
        with quiet_progress(pipe):
            pipe(prompts, num_inference_steps=cfg.sample_steps, guidance_scale=cfg.guidance,
                 generator=[torch.Generator("cpu").manual_seed(seed * 1000 + i) for i in range(n)],
                 output_type="latent", callback_on_step_end=after_step)
    finally:
        for handle in handles:
            handle.remove()
    return sums


class ConceptPrune(ErasureMethod):
    """Zero the feed-forward output weights that the concept's prompts use most (Wanda scores)."""

    Config = ConceptPruneConfig
    quick_overrides = {"pairs": 2, "sample_steps": 2, "first_steps": 2}

    def trainable(self, pipe, config):
        return [n for n in named_tensors(pipe) if n.startswith("unet.") and n.endswith("ff.net.2.weight")]

    @torch.no_grad()
    def apply(self, ctx):
        pipe, cfg = ctx.pipe, ctx.config
        layers = {n[len("unet."):-len(".weight")]: None for n in self.trainable(pipe, cfg)}
        layers = {name: pipe.unet.get_submodule(name) for name in layers}
        base_prompts, concept_prompts = prompt_pairs(ctx.concept, cfg.pairs)
        with ctx.progress_bar(2, "conceptprune scores") as bar:
            base = column_norms(pipe, base_prompts, cfg, ctx.seed, layers)
            bar.update(1)
            target = column_norms(pipe, concept_prompts, cfg, ctx.seed, layers)
            bar.update(1)
        for name, layer in layers.items():
            W = layer.weight
            keep = max(1, int(cfg.skill_ratio * W.shape[1]))
            magnitude = W.detach().abs().float()
            mask = torch.zeros_like(magnitude, dtype=torch.bool)
            for step in range(cfg.first_steps):
                if (name, step) not in target:
                    continue
                s_target = magnitude * target[(name, step)][None]
                s_base = magnitude * base[(name, step)][None]
                top = s_target.topk(keep, dim=1).indices
                chosen = torch.zeros_like(mask).scatter_(1, top, True)
                mask |= chosen & (s_target > s_base)
            W[mask] = 0
