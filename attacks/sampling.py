"""The non-text probes' own DDIM loop: stochasticity beyond DDPM's, and a known region kept.

The inpainting, noise and best-of-N probes sample the UNet directly (not through the
pipeline's scheduler), because each changes the loop itself:

* ``eta`` is DDIM's stochasticity (Song et al. 2021): 0 is deterministic DDIM, 1 is DDPM's
  variance; the noise probe goes beyond 1, where DDIM's own formula has no real direction term
  (``1 - a_prev - sigma^2 < 0``), so the direction coefficient is clamped at 0;
* ``variance_scale`` multiplies the fresh noise each step adds (Lu et al.'s extra noise);
* ``known`` (a clean latent and a mask of 1 where the model fills in) replaces the rest of the
  latent at every step by the known latent noised to that step (RePaint, Lugmayr et al. 2022).

Each image has its own generator: its initial latent and every step's noise come from it, so an
image depends on its seed only, not on the batch it is drawn in.

    z = ddim_sample(pipe, cond, uncond, generators, steps=12, guidance=6.0, eta=1.34)
    images = decode(pipe, z)
"""

from __future__ import annotations

import torch


def _randn_each(generators, shape, like) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(like.device, like.dtype)


def latent_shape(pipe) -> tuple:
    from methods.common import resolution
    side = resolution(pipe) // pipe.vae_scale_factor
    return (pipe.unet.config.in_channels, side, side)


@torch.no_grad()
def ddim_sample(pipe, cond: torch.Tensor, uncond: torch.Tensor, generators: list, steps: int,
                guidance: float, eta: float = 0.0, variance_scale: float = 1.0,
                known: tuple | None = None) -> torch.Tensor:
    """The final latents (one per generator) of classifier-free-guided DDIM sampling."""
    from diffusers import DDIMScheduler
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    unet = pipe.unet
    param = next(unet.parameters())
    ref = torch.empty(0, device=param.device, dtype=torch.float32)
    z = _randn_each(generators, latent_shape(pipe), ref) * scheduler.init_noise_sigma
    alphas = scheduler.alphas_cumprod.to(torch.float32)
    stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    prediction = scheduler.config.prediction_type
    context = torch.cat([uncond, cond]).to(param.dtype)
    for t in scheduler.timesteps:
        if known is not None:
            z0_known, mask = known
            noisy = scheduler.add_noise(z0_known, _randn_each(generators, z0_known.shape[1:], ref),
                                        t.reshape(1).expand(len(z)))
            z = mask * z + (1 - mask) * noisy
        out = unet(torch.cat([z, z]).to(param.dtype), t, encoder_hidden_states=context).sample.float()
        e_u, e_c = out.chunk(2)
        model_out = e_u + guidance * (e_c - e_u)
        a_t = alphas[int(t)]
        prev = int(t) - stride
        a_prev = alphas[prev] if prev >= 0 else scheduler.final_alpha_cumprod.to(torch.float32)
        if prediction == "v_prediction":
            x0 = a_t.sqrt() * z - (1 - a_t).sqrt() * model_out
            eps = a_t.sqrt() * model_out + (1 - a_t).sqrt() * z
        else:
            x0 = (z - (1 - a_t).sqrt() * model_out) / a_t.sqrt()
            eps = model_out
        sigma = eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
        direction = (1 - a_prev - sigma ** 2).clamp(min=0).sqrt()
        z = a_prev.sqrt() * x0 + direction * eps
        if eta > 0:
            z = z + sigma * variance_scale * _randn_each(generators, z.shape[1:], ref)
    if known is not None:
        z0_known, mask = known
        z = mask * z + (1 - mask) * z0_known
    return z


@torch.no_grad()
def decode(pipe, z: torch.Tensor) -> list:
    """PIL images of latents ``z``."""
    import numpy as np
    from PIL import Image
    vae = pipe.vae
    decoded = vae.decode((z / vae.config.scaling_factor).to(vae.device, vae.dtype)).sample.float()
    arrays = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arrays]


def generators_for(seeds: list) -> list:
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
