"""Sampling with an inference-time edit: the wrapper that applies recorded guidance specs.

``GuidedPipeline`` wraps a diffusers pipeline so that calling it applies every recorded spec:
negative-prompt concepts are joined into the negative prompt; a method with ``sampling_hooks``
(methods/base.py: SPM's gated adapter, AdaVD's value projection, ...) installs its hooks for the
call, given the call's prompts and the spec's own tensors; an SLD spec switches to eraselab's
own sampling loop (``sld_sample``; diffusers only ships SLD as a deprecated pipeline class, so
the guidance is written here from the paper, Schramowski et al. 2023, eq. 3-6: a third UNet pass
on the concept, an element-wise scale clipped at 1 and zeroed where the prompt is already far
from the concept, momentum, applied after a warm-up).

    edited = GuidedPipeline(pipe, [{"kind": "negative-prompt", "text": "van gogh"}])
    image = edited("a painting of a church", generator=torch.Generator().manual_seed(0)).images[0]
"""

from __future__ import annotations

from contextlib import ExitStack

import torch

from bench.core.errors import EraselabError


def not_exportable(method: str) -> EraselabError:
    """The one-line refusal to save an inference-time edit as a plain diffusers pipeline."""
    return EraselabError(f"{method}: an inference-time edit changes sampling, not weights, so a saved "
                         f"diffusers pipeline would still draw the concept; save the edit folder "
                         f"(eraselab erase --out) and load it with methods.delta.load_edit")


class GuidedPipeline:
    """A StableDiffusionPipeline plus inference-time erasure specs; call it like the pipeline."""

    def __init__(self, pipe, specs: list[dict], tensors: dict | None = None):
        self.__dict__["eraselab_inner"] = pipe
        self.__dict__["specs"] = [dict(s) for s in specs]
        self.__dict__["tensors"] = dict(tensors or {})
        sld = [s for s in self.specs if s["method"] == "sld"]
        keys = ("warmup_steps", "guidance_scale", "threshold", "momentum_scale", "momentum_beta")
        if len({tuple(s[k] for k in keys) for s in sld}) > 1:
            raise EraselabError("sld: sequential SLD edits must share one preset")

    @property
    def pipe(self):
        return self.eraselab_inner

    def __getattr__(self, name):  # unet, text_encoder, device, ... come from the pipeline
        return getattr(self.__dict__["eraselab_inner"], name)

    def __setattr__(self, name, value):  # a swapped scheduler reaches the pipeline that samples
        setattr(self.__dict__["eraselab_inner"], name, value)

    def __repr__(self):
        return f"GuidedPipeline({[(s['method'], s['concept']) for s in self.specs]})"

    def to(self, *args, **kwargs):
        self.eraselab_inner.to(*args, **kwargs)
        return self

    def save_pretrained(self, directory, **kwargs):
        """Refused: the weights alone are the unerased model (see ``not_exportable``)."""
        raise not_exportable(", ".join(sorted({spec["method"] for spec in self.specs})))

    def __call__(self, prompt=None, negative_prompt=None, **kwargs):
        # negative-prompt's text, and any other spec's negative text (SAFREE's keywords)
        negatives = [s["text"] if s["method"] == "negative-prompt" else s["negative"]
                     for s in self.specs if s["method"] == "negative-prompt" or s.get("negative")]
        if negatives:
            extra = ", ".join(negatives)
            if negative_prompt is None:
                negative_prompt = extra if isinstance(prompt, str) or prompt is None else [extra] * len(prompt)
            elif isinstance(negative_prompt, str):
                negative_prompt = f"{negative_prompt}, {extra}"
            else:
                negative_prompt = [f"{n}, {extra}" if n else extra for n in negative_prompt]
        sld = [s for s in self.specs if s["method"] == "sld"]
        with ExitStack() as hooks:
            for spec in self.specs:
                hook = self._hooks(spec, prompt, kwargs)
                if hook is not None:
                    hooks.enter_context(hook)
            if not sld:
                return self.eraselab_inner(prompt, negative_prompt=negative_prompt, **kwargs)
            return sld_sample(self.eraselab_inner, prompt, ", ".join(s["text"] for s in sld), sld[-1],
                              negative_prompt=negative_prompt, **kwargs)

    def _hooks(self, spec: dict, prompt, kwargs: dict):
        from methods import METHODS
        from methods.base import SamplingCall
        cls = METHODS.get(spec["method"])
        prefix = spec.get("tensors")
        tensors = {n[len(prefix):]: t for n, t in self.tensors.items() if n.startswith(prefix)} if prefix else {}
        prompts = [prompt] if isinstance(prompt, str) else list(prompt) if prompt is not None else None
        call = SamplingCall(prompts=prompts, images_per_prompt=kwargs.get("num_images_per_prompt") or 1,
                            steps=kwargs.get("num_inference_steps") or 50,
                            guidance=kwargs.get("guidance_scale", 7.5))
        return cls.sampling_hooks(self.eraselab_inner, spec, tensors, call)


@torch.no_grad()
def sld_sample(pipe, prompt, safety_text: str, params: dict, negative_prompt=None, height=None,
               width=None, num_inference_steps: int = 50, guidance_scale: float = 7.5,
               num_images_per_prompt: int = 1, eta: float = 0.0, generator=None, latents=None,
               output_type: str = "pil", return_dict: bool = True):
    """Classifier-free guidance plus SLD's safety guidance away from ``safety_text``."""
    from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput

    device = pipe._execution_device
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    height, width = height or size, width or size
    cond, uncond = pipe.encode_prompt(prompt, device, num_images_per_prompt, True, negative_prompt)
    safety = pipe.encode_prompt(safety_text, device, 1, False)[0].expand(cond.shape[0], -1, -1)
    scheduler = pipe.scheduler
    scheduler.set_timesteps(num_inference_steps, device=device)
    latents = pipe.prepare_latents(cond.shape[0], pipe.unet.config.in_channels, height, width,
                                   cond.dtype, device, generator, latents)
    extra = pipe.prepare_extra_step_kwargs(generator, eta)
    embeds = torch.cat([uncond, cond, safety])
    momentum = torch.zeros_like(latents)
    for i, t in enumerate(scheduler.timesteps):
        zin = scheduler.scale_model_input(torch.cat([latents] * 3), t)
        e_u, e_c, e_s = pipe.unet(zin, t, encoder_hidden_states=embeds).sample.chunk(3)
        guidance = e_c - e_u
        # Element-wise safety scale: large where prompt and concept predictions agree, zero where
        # the prompt's prediction is already at least `threshold` past the concept's.
        gap = e_c - e_s
        scale = torch.clamp(gap.abs() * params["guidance_scale"], max=1.0)
        scale = torch.where(gap >= params["threshold"], torch.zeros_like(scale), scale)
        safety_guidance = (e_s - e_u) * scale + params["momentum_scale"] * momentum
        momentum = params["momentum_beta"] * momentum + (1 - params["momentum_beta"]) * safety_guidance
        if i >= params["warmup_steps"]:
            guidance = guidance - safety_guidance
        latents = scheduler.step(e_u + guidance_scale * guidance, t, latents, **extra).prev_sample
    if output_type == "latent":
        images = latents
    else:
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        images = pipe.image_processor.postprocess(decoded, output_type=output_type,
                                                  do_denormalize=[True] * decoded.shape[0])
    pipe.maybe_free_model_hooks()
    if not return_dict:
        return images, None
    return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)
