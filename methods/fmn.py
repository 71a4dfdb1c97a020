"""fmn: Forget-Me-Not (Zhang et al. 2023), attention re-steering.

Minimises the L2 norm of the cross-attention probabilities (after softmax) that the concept's
tokens receive, over every attn2 layer, head and pixel, on noised latents of real images of the
concept with the prompt "a photo of {c}". The probabilities are captured by an attention processor
installed on every attn2 for the run (and removed afterwards; it computes exactly what diffusers'
plain ``AttnProcessor`` does). Token positions: only the concept's own tokens; start-of-text,
end-of-text and padding (SD 1.x pads with end-of-text) are EXCLUDED -- counting them would push
attention off the prompt's summary tokens, which every prompt shares.
Variants: any UNet subset of methods/subsets.py, ``full`` (the whole UNet, default) or ``xattn``
(cross-attention; the old name ``attn2`` still works). AdamW lr 2e-6, 35 steps, batch 1.

    eraselab erase --method fmn --concept snoopy --seed 0 --out out/fmn-snoopy
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from methods.base import UnetSubsetMethod
from methods.common import (batch_indices, enable_grads, encode_ids, fill, images_to_latents,
                            noise_latents, optimise, tokenize, training_scheduler, unet_out, word_span)
from methods.subsets import UNET, check


class CaptureAttnProcessor:
    """diffusers' plain attention, storing ``probs[..., positions]`` of each call in ``store``
    (every column when ``positions`` is None: a caller whose prompts differ per batch row picks
    its own)."""

    def __init__(self, store: list, positions: list[int] | None):
        self.store = store
        self.positions = positions

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        ndim = hidden_states.ndim
        if ndim == 4:
            b, ch, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, ch, h * w).transpose(1, 2)
        batch, seq, _ = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape
        attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(attn.head_to_batch_dim(query), key, attention_mask)
        # (batch*heads, pixels, concept tokens)
        self.store.append(probs if self.positions is None else probs[:, :, self.positions])
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, ch, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextmanager
def capture_cross_attention(unet, positions: list[int] | None, by_layer: bool = False):
    """Install capturing processors on every attn2 for the duration; yields the store list (every
    call in call order), or with ``by_layer`` {attn2 module name: [its calls]}."""
    original = dict(unet.attn_processors)
    shared: list = []
    stores: dict = {}
    procs = {}
    for name, proc in original.items():
        if ".attn2." in f".{name}":
            store = stores.setdefault(name.rsplit(".", 1)[0], []) if by_layer else shared
            procs[name] = CaptureAttnProcessor(store, positions)
        else:
            procs[name] = proc
    unet.set_attn_processor(procs)
    try:
        yield stores if by_layer else shared
    finally:
        unet.set_attn_processor(dict(original))


@dataclass
class FmnConfig:
    lr: float = 2e-6
    steps: int = 35
    batch_size: int = 1
    k: int = 4
    hflip_p: float = 0.0
    prompt: str = "a photo of {}"
    params: str = "full"         # a UNet subset (methods/subsets.py)

    def check(self):
        problem = check(self.params, UNET)
        if problem:
            return problem
        if self.prompt.count("{}") != 1:
            return "prompt must contain exactly one '{}'"
        if self.lr <= 0 or self.steps < 1 or self.batch_size < 1 or self.k < 1:
            return "lr, steps, batch_size and k must be positive"
        return None


class ForgetMeNot(UnetSubsetMethod):
    """Forget-Me-Not: suppress the concept tokens' cross-attention."""

    Config = FmnConfig
    needs_images = True
    quick_overrides = {"steps": 2}

    def apply(self, ctx):
        pipe, cfg = ctx.pipe, ctx.config
        latents = images_to_latents(pipe, ctx.images, ctx.generator, ctx.rng, cfg.hflip_p)
        ids = tokenize(pipe, [fill(cfg.prompt, ctx.concept.name)])
        positions = word_span(pipe, ids[0].tolist(), ctx.concept.name, "fmn")
        with torch.no_grad():
            cond1 = encode_ids(pipe.text_encoder, ids)
        params = enable_grads(pipe, self.trainable(pipe, cfg))
        opt = torch.optim.AdamW(params, lr=cfg.lr)
        scheduler = training_scheduler(pipe)

        with capture_cross_attention(pipe.unet, positions) as store:
            def loss_fn(step):
                idx = batch_indices(latents.shape[0], cfg.batch_size, ctx.generator)
                noisy, _, t = noise_latents(scheduler, latents[idx], ctx.generator)
                store.clear()
                unet_out(pipe.unet, noisy, t, cond1.expand(len(idx), -1, -1))
                # one L2 norm per attn2 layer (heads x pixels x concept tokens), summed
                return sum(torch.linalg.vector_norm(p.float()) for p in store)

            optimise(ctx, params, opt, cfg.steps, loss_fn)
