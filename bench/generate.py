"""Seeded image generation with a diffusers Stable Diffusion pipeline.

Each image has its own ``torch.Generator`` seeded from its own seed, so an image is the same
whichever batch or shard it lands in (bit-identical at equal batch size; across batch sizes
the matrix kernels may differ in the last float bits). Inference-time erasure methods pass a
wrapped pipeline with the same call signature.

    images = generate(pipe, ["a photo of snoopy"] * 4, seeds=[0, 1, 2, 3], steps=25, guidance=6.0)
"""

from __future__ import annotations

from typing import Sequence

import torch


@torch.no_grad()
def generate(pipe, prompts: Sequence[str], seeds: Sequence[int], steps: int = 25, guidance: float = 6.0,
             batch_size: int = 16, resolution: int | None = None, negative_prompts=None,
             device: str = "cpu") -> list:
    """PIL images for (prompt, seed) pairs, in order, ``batch_size`` at a time."""
    if len(prompts) != len(seeds):
        raise ValueError("one seed per prompt")
    size = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    images = []
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        generators = [torch.Generator(device).manual_seed(int(s)) for s in seeds[chunk]]
        kwargs = {}
        if negative_prompts is not None:
            kwargs["negative_prompt"] = list(negative_prompts[chunk])
        out = pipe(list(prompts[chunk]), num_inference_steps=steps, guidance_scale=guidance,
                   height=size, width=size, generator=generators, output_type="pil", **kwargs)
        images.extend(out.images)
    return images
