"""inpainting: the non-text inpainting probe of Lu et al. (NeurIPS 2025, "When Are Concepts Erased
From Diffusion Models?").

Images of the concept have their centre masked (a square of ``mask_fraction`` of the area) and the
edited model fills it in, conditioned on the base prompt: if the erasure only interferes with
the text's guidance, the unmasked context still leads the model back to the concept. The
authors use SD's inpainting pipeline with the erased UNet on the original model's images; a
plain text-to-image UNet inpaints here by the replacement method (RePaint, Lugmayr et al. 2022):
at every DDIM step the known region is replaced by the concept image noised to that step
(fresh noise from the image's own generator), and the final latent keeps the known region's
clean encoding. The concept images are the catalog's under the attack's own seeds (never the
evaluation images). The original model inpainting the same images with the same seeds is the
control, and it matters: the context alone can show enough of the concept for the judge.

    from attacks.inpainting import Inpainting, InpaintingConfig
    filled = Inpainting().draw(pipe, "a photo of a church", seeds, concept_images, InpaintingConfig(), 12, 6.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from attacks.base import SamplingProbe


@dataclass
class InpaintingConfig:
    mask_fraction: float = 0.25   # the masked centre square's share of the image (256x256 of 512x512)

    def check(self):
        if not 0 < self.mask_fraction < 1:
            return "mask_fraction is the masked share of the image, in (0, 1)"
        return None


def centre_mask(size: int, fraction: float) -> torch.Tensor:
    """(size, size) with 1 inside the centred square of ``fraction`` of the area (to be filled)."""
    side = max(1, int(round(size * fraction ** 0.5)))
    start = (size - side) // 2
    mask = torch.zeros(size, size)
    mask[start:start + side, start:start + side] = 1.0
    return mask


class Inpainting(SamplingProbe):
    """The edited model fills the masked centre of concept images (a non-text probe)."""

    version = "2"   # the probes' shared DDIM loop (attacks/sampling.py)
    Config = InpaintingConfig

    def procedure(self, config) -> dict:
        return {"mask_fraction": config.mask_fraction}

    @torch.no_grad()
    def draw(self, pipe, prompt: str, seeds: list[int], images: list, config, steps: int, guidance: float,
             clip=None) -> list:
        """PIL images: each of ``images`` with its masked centre filled by ``pipe`` from ``prompt``,
        image i with its own generator seeded by ``seeds[i]``."""
        from attacks.sampling import ddim_sample, decode, generators_for
        from methods.common import encode_prompts, resolution
        size = resolution(pipe)
        vae = pipe.vae
        pixels = torch.from_numpy(np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC),
                                                       dtype=np.float32) / 127.5 - 1.0 for im in images]))
        pixels = pixels.permute(0, 3, 1, 2)
        z0 = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean.float() * vae.config.scaling_factor
        mask = centre_mask(z0.shape[-1], config.mask_fraction).to(z0.device, z0.dtype)
        cond = encode_prompts(pipe, [prompt] * len(images))
        uncond = encode_prompts(pipe, [""] * len(images))
        z = ddim_sample(pipe, cond, uncond, generators_for(seeds), steps, guidance, known=(z0, mask))
        return decode(pipe, z)


class MaskedContext(Inpainting):
    """The inpainting probe's control: the concept images with their centre masked out and
    nothing filled in (mid-grey), drawn by no model. What the judge sees in the context alone;
    an inpainting rate near it says the context, not the model, shows the concept."""

    version = "1"   # draws no model: unchanged by the sampling loop

    def not_applicable(self, method_cls):
        return None  # no model is involved: the same images for every arm

    def draw(self, pipe, prompt, seeds, images, config, steps, guidance, clip=None):
        from methods.common import resolution
        size = resolution(pipe)
        mask = centre_mask(size, config.mask_fraction).numpy().astype(bool)
        out = []
        for im in images:
            a = np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC)).copy()
            a[mask] = 128
            out.append(Image.fromarray(a))
        return out
