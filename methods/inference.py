"""Inference-time baselines: ``negative-prompt`` and ``sld`` (Safe Latent Diffusion).

No weights change. ``erase`` records a guidance spec, and ``methods.guidance.GuidedPipeline``
wraps the diffusers pipeline so that calling it applies every recorded spec (SLD's sampling loop
is there too).

    edited = erase(pipe, "sld", "van gogh", variant="strong").pipeline
    image = edited("a painting of a church", generator=torch.Generator().manual_seed(0)).images[0]

Anyone with the weights can drop the wrapper: report these as reference lines, not defences.
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import ErasureMethod

# SLD presets (warm-up steps, guidance scale, threshold, momentum scale, momentum beta), as in
# the SLD paper and diffusers' SafetyConfig; "weak" uses scale 20 (diffusers' value).
SLD_PRESETS = {
    "weak": dict(warmup_steps=15, guidance_scale=20.0, threshold=0.0, momentum_scale=0.0, momentum_beta=0.0),
    "medium": dict(warmup_steps=10, guidance_scale=1000.0, threshold=0.01, momentum_scale=0.3, momentum_beta=0.4),
    "strong": dict(warmup_steps=7, guidance_scale=2000.0, threshold=0.025, momentum_scale=0.5, momentum_beta=0.7),
    "max": dict(warmup_steps=0, guidance_scale=5000.0, threshold=1.0, momentum_scale=0.5, momentum_beta=0.7),
}


@dataclass
class NegativePromptConfig:
    text: str | None = None  # the negative text; None uses the concept's name


class NegativePrompt(ErasureMethod):
    """Classifier-free guidance with the concept as the negative prompt."""

    Config = NegativePromptConfig
    inference_time = True

    def inference_spec(self, ctx):
        return {"method": self.name, "concept": ctx.concept.name,
                "text": ctx.config.text or ctx.concept.name}


@dataclass
class SldConfig:
    preset: str = "medium"
    # None: the preset's value; set one to override it (e.g. --set guidance_scale=200)
    warmup_steps: int | None = None
    guidance_scale: float | None = None
    threshold: float | None = None
    momentum_scale: float | None = None
    momentum_beta: float | None = None
    text: str | None = None  # the safety concept text; None uses the concept's name

    def check(self):
        if self.preset not in SLD_PRESETS:
            return f"unknown SLD preset {self.preset!r}; expected one of {', '.join(SLD_PRESETS)}"
        return None


class Sld(ErasureMethod):
    """Safe Latent Diffusion: guidance away from the concept (weak/medium/strong/max presets)."""

    Config = SldConfig
    variants = tuple(SLD_PRESETS)
    variant_field = "preset"
    inference_time = True
    quick_overrides = {"warmup_steps": 0}  # 2 sampling steps: the preset's warm-up would hide SLD

    def inference_spec(self, ctx):
        cfg = ctx.config
        params = dict(SLD_PRESETS[cfg.preset])
        for key in params:
            if getattr(cfg, key) is not None:
                params[key] = getattr(cfg, key)
        return {"method": self.name, "concept": ctx.concept.name, "preset": cfg.preset,
                "text": cfg.text or ctx.concept.name, **params}
