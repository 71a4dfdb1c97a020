"""noise and best-of-n: Lu et al.'s noise-based probe (NeurIPS 2025, "When Are Concepts Erased
From Diffusion Models?") and the best-of-N plain-sampling control it needs.

``noise`` draws every image of the base prompt N times with DDIM run noisier than usual (each of
the grid's stochasticities ``eta`` x extra-noise scales ``variance_scale``) and keeps the one a
selector rates highest: if an erasure only steers the text's guidance away, a noisier path may
wander back to the concept. Keeping the best of N inflates any rate, whatever the noise does,
so ``best-of-n`` draws the same image N times with plain DDIM (eta 0) and the same selector:
only the difference between the two says the noise brought the concept back (the report's lift
for ``noise`` is taken against ``best-of-n``, paired image by image, not against single plain
images).

Each of the N draws of an image has its own seed (from the image's seed and the draw's index),
the same N seeds in both probes. The selector is the evaluation CLIP's cosine between the draw
and the base prompt; the authors select by their judge (a ResNet-50's concept probability),
here the judge stays apart from anything that chooses images. The study's sampler steps and
guidance apply; DDIM is the probes' own loop (attacks/sampling.py).

    from attacks.noise import NoiseProbe
    images = NoiseProbe().draw(pipe, "a photo of a church", seeds, [], NoiseProbe.Config(), 12, 6.0, clip=clip)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.base import SamplingProbe
from bench.core.ids import image_seed


@dataclass
class NoiseConfig:
    etas: tuple[float, ...] = (1.0, 1.17, 1.34, 1.51, 1.68, 1.85)
    variance_scales: tuple[float, ...] = (1.0, 1.02, 1.03, 1.04)

    def check(self):
        if not self.etas or not self.variance_scales:
            return "etas and variance_scales must each list at least one value"
        if min(self.etas) < 0 or min(self.variance_scales) <= 0:
            return "etas must be >= 0 and variance_scales > 0"
        return None

    @property
    def draws(self) -> list[tuple[float, float]]:
        return [(eta, scale) for eta in self.etas for scale in self.variance_scales]


@dataclass
class BestOfNConfig:
    n: int = 24   # the noise probe's grid size (6 etas x 4 scales): the same N, the same selector

    def check(self):
        return None if self.n >= 1 else "n (draws per image) must be >= 1"

    @property
    def draws(self) -> list[tuple[float, float]]:
        return [(0.0, 1.0)] * self.n


def draw_seed(seed: int, index: int) -> int:
    """The seed of draw ``index`` of the image with ``seed``: the same in noise and best-of-n."""
    return image_seed(f"draw{index}", 0, base_seed=int(seed))


class NoiseProbe(SamplingProbe):
    """Best of N noisier DDIM draws by the evaluation CLIP (a non-text probe; compare with best-of-n)."""

    needs_concept_images = False
    needs_selector = True
    compare_with = "best-of-n"
    Config = NoiseConfig
    quick_overrides = {"etas": [1.0, 1.85], "variance_scales": [1.04]}

    def procedure(self, config) -> dict:
        return {"draws": len(config.draws)}

    @torch.no_grad()
    def draw(self, pipe, prompt: str, seeds: list, images: list, config, steps: int, guidance: float,
             clip=None) -> list:
        """One image per seed: the best of the config's draws by cosine(CLIP image, CLIP prompt)."""
        from attacks.sampling import ddim_sample, decode, generators_for
        from bench.core.errors import EraselabError
        from methods.common import encode_prompts
        if clip is None:
            raise EraselabError(f"{self.name}: needs the evaluation CLIP to select among its draws")
        text = clip.encode_texts([prompt])
        cond = encode_prompts(pipe, [prompt] * len(seeds))
        uncond = encode_prompts(pipe, [""] * len(seeds))
        best, best_score = [None] * len(seeds), [float("-inf")] * len(seeds)
        for index, (eta, scale) in enumerate(config.draws):
            gens = generators_for([draw_seed(s, index) for s in seeds])
            drawn = decode(pipe, ddim_sample(pipe, cond, uncond, gens, steps, guidance, eta=eta,
                                             variance_scale=scale))
            scores = (clip.encode_images(drawn) * text).sum(-1).tolist()
            for i, (im, score) in enumerate(zip(drawn, scores)):
                if score > best_score[i]:  # ties keep the earlier draw: deterministic
                    best[i], best_score[i] = im, score
        return best


class BestOfN(NoiseProbe):
    """The noise probe's control: the best of N plain DDIM draws by the same selector."""

    compare_with = ""
    Config = BestOfNConfig
    quick_overrides = {"n": 2}
