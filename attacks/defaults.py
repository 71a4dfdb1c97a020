"""Per-model-family attack budgets: the ONE place they differ from the authors'.

Each probe's ``Config`` dataclass carries its authors' budget for Stable Diffusion (family
``"sd"``, detected by methods.defaults.detect_family). The mini world's models are small and its
concepts coarse, so the iteration counts scale down; learning rates stay the authors' where the
token embeddings have a similar scale (mini CLIP: mean row norm 0.23, CLIP ViT-L/14 about 0.4).
Budgets were fixed before any attack was run, never tuned on the study's numbers; a suite's
``robustness.budgets`` overrides them per probe.

| probe             | sd (authors)                                        | mini                                |
|-------------------|-----------------------------------------------------|-------------------------------------|
| unlearndiff       | k 3 prefix tokens, 50 timesteps x 40 its, lr 0.01   | 5 timesteps x 10 its, batch 4       |
| soft-prompt       | 1 prefix vector, 30 Adam steps, lr 1e-3             | 50 steps, batch 4                   |
| concept-inversion | 5000 steps, lr 5e-3 x 16 (scaled), batch 16, 25 ims | 100 steps, lr 5e-3 x 4, batch 4, 8 ims |
| ring-a-bell       | eta 3, K 16 tokens, population 200, 3000 generations | population 64, 150 generations      |
| p4d-n, p4d-k      | 3000 its, lr 0.1, batch 1, select every 50 (25 steps, cfg 7.5) | 50 its, batch 4, every 25 (12 steps, cfg 6) |
| inpainting, masked-context | a centred mask of 25% of the area (256 of 512 px) |                          |
| noise, best-of-n  | N = 24: eta 1.0-1.85 (6) x extra noise 1.00-1.04 (4) | N = 6: eta 1.0, 1.34, 1.68 x 1.00, 1.04 |

The mini step counts were set by time before any attack ran (a white-box job takes 12-30 s on
2 CPU cores, 45-90 s against fewshot-te's edit; P4D's 100 iterations took 38 s on the original
model, so it has 50), never by a result. ``noise`` and ``best-of-n``
keep the same N in every family (best-of-N is only a control at the same N).
"""

from __future__ import annotations

from methods.defaults import FAMILIES
from bench.core.errors import EraselabError

# probe name -> family -> {config key: value}; missing entries mean "the authors' budget".
BUDGETS: dict[str, dict[str, dict]] = {
    "unlearndiff": {"sd": {}, "mini": {"timesteps": 5, "iterations": 10, "batch": 4}},
    "soft-prompt": {"sd": {}, "mini": {"steps": 50, "batch": 4}},
    "concept-inversion": {"sd": {}, "mini": {"steps": 100, "lr": 2e-2, "batch": 4, "images": 8}},
    "ring-a-bell": {"sd": {}, "mini": {"population": 64, "generations": 150}},
    "p4d-n": {"sd": {}, "mini": {"iterations": 50, "batch": 4, "eval_every": 25, "eval_steps": 12,
                                 "eval_guidance": 6.0}},
    "p4d-k": {"sd": {}, "mini": {"iterations": 50, "batch": 4, "eval_every": 25, "eval_steps": 12,
                                 "eval_guidance": 6.0}},
    "noise": {"sd": {}, "mini": {"etas": [1.0, 1.34, 1.68], "variance_scales": [1.0, 1.04]}},
    "best-of-n": {"sd": {}, "mini": {"n": 6}},
}


def family_budget(probe: str, family: str) -> dict:
    if family not in FAMILIES:
        raise EraselabError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    return dict(BUDGETS.get(probe, {}).get(family, {}))
