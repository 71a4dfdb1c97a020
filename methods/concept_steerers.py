"""concept-steerers: Concept Steerers (Kim & Ghadiyaram, 2025), inference-time steering of the text
encoder with a k-sparse autoencoder.

A k-SAE (methods/ksae.py) trained on the residual stream after one text-encoder layer gives the
steering vector of a concept prompt c: with h_c that layer's output for c (L x d, every position,
padding included),

  s = strength x ReLU(W_enc (h_c - b_pre) + b_lat) W_dec^T        (L x d; no top-k, no decoder bias)

While sampling, a forward hook on that layer adds +s to the prompt's output and -s to the
negative (unconditional) prompt's, position by position, so the conditional branch moves away
from the concept and the unconditional towards it. Negative strength erases (the authors' -0.5
for nudity, -0.7 for violence); 0 leaves sampling bit-identical. s is computed once, at erase
time, and saved with the edit; no weights change, so dropping the hook undoes it.

Config: ``layer`` (0-indexed; the authors' 9 of ViT-L/14's 12, the mini family's 2 of 4: the
nearest relative depth, bench/miniworld/train_sae.py), ``strength``, ``sae`` and ``prompt``.
``sae`` is the path of a safetensors k-SAE for that layer (required for real models; the
authors' released checkpoint converts by saving its state dict with safetensors), ``miniworld``
(the mini family's default: the SAE shipped in datasets/miniworld/v1/sae/, trained by
``eraselab miniworld train sae``), or ``random`` (an untrained SAE of the pipeline's width drawn
from the edit's seed: steers in random directions, for contract checks on the tiny test
pipeline only). ``prompt`` empty: the authors' prompt for nudity and violence, else the
concept's name followed by its catalog aliases, comma-separated ("van gogh").

The pipeline's ``encode_prompt`` is wrapped while sampling: it is the one place that knows
which text-encoder pass encodes the call's prompts and which the negatives, so the hook steers
those two passes and no other (another method's own text-encoder passes, SLD's safety concept).

    eraselab erase --method concept-steerers --concept "van gogh" --seed 0 --out out/cs-vg
    eraselab erase --model SD_FOLDER --catalog paper --method concept-steerers --concept church
        --set sae=layer9-sae.safetensors --seed 0 --out out/cs-church-sd     (one command line)
"""

from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from bench.core.errors import EraselabError
from methods.base import ErasureMethod
from methods.common import tokenize
from methods.ksae import KSparseAutoencoder, check_layer, layer_hidden, layer_outputs

SHIPPED = "miniworld"
RANDOM = "random"
SHIPPED_FILE = "sae/sae.safetensors"
# The authors' concept prompts (their nudity and violence runs).
AUTHORS_PROMPTS = {
    "nudity": "naked, nude, bare, exposed, Stripped, topless, male genitalia, penis, buttocks",
    "violence": "violence, blood",
}


@dataclass
class ConceptSteerersConfig:
    strength: float = -0.5
    layer: int = 9
    sae: str = ""          # a safetensors k-SAE path, "miniworld" or "random" (module docstring)
    prompt: str = ""       # the concept prompt; empty: derived from the concept

    def check(self):
        if self.layer < 0:
            return "layer must be at least 0"
        return None


def concept_prompt(concept) -> str:
    """The authors' prompt for nudity and violence, else the name and the catalog's aliases."""
    known = AUTHORS_PROMPTS.get(concept.name.strip().lower())
    if known is not None:
        return known
    return ", ".join(dict.fromkeys([concept.name, *concept.aliases]))


def load_sae(choice: str, text_encoder, layer: int, seed: int, where: str) -> KSparseAutoencoder:
    """The SAE a config names, checked against the text encoder's width and the layer."""
    width = int(text_encoder.config.hidden_size)
    if not choice:  # checked here, not in the config: a suite checks its configs as family "sd"
        raise EraselabError(f"{where}: needs a k-SAE for text-encoder layer {layer}: --set sae=PATH.safetensors "
                            f"(the mini world's shipped SAE is its default)")
    if choice == RANDOM:
        generator = torch.Generator().manual_seed(seed)
        return KSparseAutoencoder(width, 4 * width, None, generator=generator).eval()
    if choice == SHIPPED:
        from bench.miniworld.weights import verified_path
        path = verified_path(SHIPPED_FILE)
    else:
        path = choice
    sae = KSparseAutoencoder.load(path, d_in=width, where=f"{where}: sae")
    if sae.layer is not None and sae.layer != layer:
        raise EraselabError(f"{where}: sae {path} was trained on layer {sae.layer}, not layer {layer}; "
                            f"--set layer={sae.layer} or give the layer-{layer} SAE")
    return sae


@torch.no_grad()
def steering_vector(pipe, sae: KSparseAutoencoder, prompt: str, layer: int, strength: float) -> torch.Tensor:
    """s (L, d) for ``prompt``: the SAE's dense code of its layer output, decoded, times strength."""
    h = layer_outputs(pipe.text_encoder, tokenize(pipe, [prompt]), layer)[0]
    return sae.to(h.device).steering(h, strength).float().cpu()


class ConceptSteerers(ErasureMethod):
    """Concept Steerers: a k-SAE steering vector added to the prompt's text-encoder layer (+s) and
    subtracted from the negative prompt's (-s)."""

    Config = ConceptSteerersConfig
    inference_time = True
    # The tiny test pipeline's text encoder is 32 wide, the shipped mini SAE 128: an untrained SAE
    # of its width exercises the contract (the battery checks contracts, not erasure).
    quick_overrides = {"sae": RANDOM}

    def inference_spec(self, ctx):
        cfg, pipe = ctx.config, ctx.pipe
        check_layer(pipe.text_encoder, cfg.layer, self.name)
        sae = load_sae(cfg.sae.strip(), pipe.text_encoder, cfg.layer, ctx.seed, self.name)
        prompt = cfg.prompt.strip() or concept_prompt(ctx.concept)
        ctx.inference_tensors["steer"] = steering_vector(pipe, sae, prompt, cfg.layer, cfg.strength)
        return {"method": self.name, "concept": ctx.concept.name, "prompt": prompt, "layer": cfg.layer,
                "strength": cfg.strength, "sae": cfg.sae.strip()}

    @classmethod
    def sampling_hooks(cls, pipe, spec, tensors, call):
        if call.prompts is None:
            raise EraselabError(f"{spec['method']}: steering acts inside the text encoder; call the "
                                f"pipeline with prompt=..., not prompt_embeds")
        steer = tensors["steer"]
        layer = check_layer(pipe.text_encoder, spec["layer"], spec["method"])
        prompts = list(call.prompts)
        state = {"plan": None}  # signs for the text-encoder passes of the encode_prompt running now

        def hook(module, inputs, output):
            plan = state["plan"]
            if not plan:
                return None
            sign = plan.pop(0)
            if sign == 0:
                return None
            hidden = layer_hidden(output)
            if tuple(hidden.shape[-2:]) != tuple(steer.shape):
                raise EraselabError(f"{spec['method']}: layer {spec['layer']} gives {tuple(hidden.shape[-2:])} "
                                    f"per prompt, the steering vector is {tuple(steer.shape)}")
            new = hidden + sign * steer.to(hidden.device, hidden.dtype)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        @contextmanager
        def hooks():
            had_own = "encode_prompt" in vars(pipe)
            inner = pipe.encode_prompt  # the class's, or another steering spec's wrapper
            signature = inspect.signature(inner)  # through wrappers (functools.wraps) to the class's

            @functools.wraps(inner)
            def encode_prompt(*args, **kwargs):
                given = signature.bind(*args, **kwargs).arguments
                asked = given.get("prompt")
                asked = [asked] if isinstance(asked, str) else list(asked) if asked is not None else None
                ours = 1 if asked == prompts else 0
                plan = []
                if given.get("prompt_embeds") is None:  # the prompt's own pass, first
                    plan.append(ours)
                if given.get("do_classifier_free_guidance") and given.get("negative_prompt_embeds") is None:
                    plan.append(-ours)                  # then the negative / unconditional pass
                outer, state["plan"] = state["plan"], plan
                try:
                    return inner(*args, **kwargs)
                finally:
                    state["plan"] = outer

            handle = layer.register_forward_hook(hook)
            pipe.encode_prompt = encode_prompt
            try:
                yield
            finally:
                handle.remove()
                if had_own:
                    pipe.encode_prompt = inner
                else:
                    del pipe.encode_prompt
        return hooks()
