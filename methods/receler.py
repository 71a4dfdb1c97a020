"""receler: Reliable Concept Erasing via Lightweight Erasers (Huang et al., ECCV 2024).

A new module, an *eraser*, follows every cross-attention of the UNet: with ``a`` the attn2
output, the block computes ``x <- x + a + U GELU(D a)`` (``D``: Linear(dim, rank), ``U``:
Linear(rank, dim), both with biases, ``U`` zero-initialised so training starts from the original
model); the UNet's own weights stay frozen. The erasers are trained with ESD's objective on an
adversarially extended prompt, plus a regulariser that keeps them quiet outside the concept:

  L = || eps_th(z_t, tau(c + delta)) - [e_0 - g (e_c - e_0)] ||^2 + reg_weight * L_reg

(e_x: the frozen model's prediction, i.e. the erasers off; g = ``guidance``). z_t comes from
``ddim_steps``-step DDIM with guidance ``start_guidance`` on c, run by the model *with* the
erasers (as the authors do), stopped after k ~ U{0..ddim_steps-1} steps and queried at the
scheduler's timestep of step k (the harness's one ESD-family convention, methods/esd.py).

Adversary: ``attack_tokens`` soft-token embeddings ``delta`` sit right after the concept's tokens
("{c} * * ... *", filled by attacks.placeholders, so they enter the frozen text encoder where
token embeddings do, as the harness's soft-prompt attack does). They start at U[0, 1), persist
across iterations with their own Adam (``attack_lr``, ``attack_weight_decay``), and each
iteration take ``attack_steps`` steps on || eps_th(z_t, tau(c + delta)) - e_c ||^2 (make the
erased model draw the concept again). The erasers then take one Adam step (``lr``) on L, whose
first term is the prediction of the last attack step's forward pass (one pass serves both, so
it sees delta before that step's update). Before iteration ``attack_start``, or with
``attack_steps`` 0, the prompt is c alone.

Mask regulariser: the frozen model's cross-attention probabilities of the concept's tokens on
(z_t, c), averaged over tokens and heads, then over the attn2 layers whose maps are
``mask_resolution`` on a side (the authors' 16x16 level of SD at 512 px; a UNet without that
level uses its nearest one), min-max normalised per image and thresholded at
``mask_threshold`` give a binary mask M, resized (nearest) to each layer's grid;
L_reg = mean over layers of sum_pixels mean_channels (eraser_out (1 - M))^2 / sum_pixels (1 - M).

How the edit is kept and applied: the erasers are the edit's inference tensors (keys
``<attn2 module>.{down,up}.{weight,bias}``, saved in delta.safetensors beside the weights, which
do not change). They act on every prompt with no gate, so the method declares
``persistent_hooks``: while the edit is loaded, a forward hook on each attn2 of the pipeline's
own UNet adds the eraser's output (methods/delta.py installs them; ``reset_edits`` removes
them). Whatever runs that UNet (pipeline sampling, white-box attacks, sampling probes,
fine-tuning copies, a later erasure) therefore meets the erased model, as with a weight edit.
The erasers live in the edit folder only, so ``--export-pipeline`` refuses Receler (a plain
diffusers pipeline would be the unerased model).

    eraselab erase --method receler --concept church --seed 0 --out out/receler-church
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attacks.placeholders import PLACEHOLDER, Placeholders, placeholder_id
from bench.core.errors import EraselabError
from methods.base import ErasureMethod
from methods.common import (enable_grads, encode_ids, optimise, tokenize, training_scheduler,
                            unet_out)
from methods.esd import esd_latents
from methods.fmn import capture_cross_attention

ERASER_KEYS = ("down.weight", "down.bias", "up.weight", "up.bias")


@dataclass
class RecelerConfig:
    lr: float = 3e-4
    steps: int = 500
    rank: int = 128                  # eraser width (D: dim -> rank, U: rank -> dim)
    guidance: float = 1.0            # g of the target e_0 - g (e_c - e_0)
    start_guidance: float = 3.0      # guidance of the DDIM run that makes z_t
    ddim_steps: int = 50
    attack_steps: int = 50           # adversary steps per iteration (0: no adversary)
    attack_tokens: int = 16          # soft tokens after the concept's tokens
    attack_lr: float = 0.1
    attack_weight_decay: float = 0.1
    attack_start: int = 0            # iterations before the adversary joins
    mask_threshold: float = 0.1
    mask_resolution: int = 16        # side of the attention maps the mask is averaged from
    reg_weight: float = 0.1

    def check(self):
        if self.lr <= 0 or self.steps < 1 or self.ddim_steps < 1 or self.rank < 1:
            return "lr, steps, ddim_steps and rank must be positive"
        if self.attack_steps < 0 or self.attack_tokens < 1 or self.attack_lr <= 0:
            return "attack_steps must be at least 0, attack_tokens and attack_lr positive"
        if self.attack_weight_decay < 0 or self.attack_start < 0 or self.reg_weight < 0:
            return "attack_weight_decay, attack_start and reg_weight must be at least 0"
        if not 0 <= self.mask_threshold <= 1 or self.mask_resolution < 1:
            return "mask_threshold must be in [0, 1] and mask_resolution positive"
        return None


# --- the erasers ---------------------------------------------------------------------------
def eraser_targets(unet) -> list[str]:
    """Every cross-attention module (``...attn2``) of ``unet``: one eraser after each."""
    from diffusers.models.attention_processor import Attention
    return [name for name, module in unet.named_modules()
            if name.split(".")[-1] == "attn2" and isinstance(module, Attention)]


class Erasers:
    """One eraser per cross-attention of a UNet, ``e(a) = U GELU(D a)`` on the attn2 output ``a``,
    applied by forward hooks that return ``a + e(a)``. Computed in float32 whatever the UNet's
    dtype (as methods/adapters.py), the weights are plain tensors, not UNet parameters."""

    def __init__(self, unet, weights: dict):
        self.weights = weights  # attn2 module name -> {"down.weight": ..., ...}
        self.layers = {name: unet.get_submodule(name) for name in weights}

    @classmethod
    def around(cls, unet, rank: int, generator: torch.Generator):
        """New erasers: ``D`` as nn.Linear initialises (uniform within 1/sqrt(dim)), ``U`` zero."""
        weights = {}
        for name in eraser_targets(unet):
            out = unet.get_submodule(name).to_out[0]
            dim, device = out.out_features, out.weight.device
            bound = 1.0 / math.sqrt(dim)
            draws = {"down.weight": (torch.rand((rank, dim), generator=generator) * 2 - 1) * bound,
                     "down.bias": (torch.rand((rank,), generator=generator) * 2 - 1) * bound,
                     "up.weight": torch.zeros(dim, rank), "up.bias": torch.zeros(dim)}
            weights[name] = {k: t.to(device=device, dtype=torch.float32).requires_grad_(True)
                             for k, t in draws.items()}
        if not weights:
            raise EraselabError("receler: this UNet has no cross-attention (attn2) to put erasers after")
        return cls(unet, weights)

    @classmethod
    def from_tensors(cls, unet, tensors: dict, where: str = "erasers"):
        """Erasers saved by ``tensors()``; ``where`` names the source in an error."""
        if not tensors:
            raise EraselabError(f"{where}: no eraser tensors (the edit's delta file lacks them)")
        names = sorted({key.rsplit(".", 2)[0] for key in tensors})
        targets = set(eraser_targets(unet))
        weights = {}
        for name in names:
            if name not in targets:
                raise EraselabError(f"{where}: eraser {name!r} names no cross-attention of this UNet")
            missing = [k for k in ERASER_KEYS if f"{name}.{k}" not in tensors]
            if missing:
                raise EraselabError(f"{where}: eraser {name!r} lacks its {missing[0]} tensor")
            w = {k: tensors[f"{name}.{k}"] for k in ERASER_KEYS}
            out = unet.get_submodule(name).to_out[0]
            rank, dim = w["down.weight"].shape[0], out.out_features
            shapes = {"down.weight": (rank, dim), "down.bias": (rank,), "up.weight": (dim, rank),
                      "up.bias": (dim,)}
            bad = [k for k in ERASER_KEYS if tuple(w[k].shape) != shapes[k]]
            if w["down.weight"].dim() != 2 or bad:
                raise EraselabError(f"{where}: eraser {name!r} has shapes "
                                    f"{[tuple(w[k].shape) for k in ERASER_KEYS]}, which do not fit "
                                    f"the layer's width {dim}")
            weights[name] = {k: t.to(out.weight.device, torch.float32) for k, t in w.items()}
        return cls(unet, weights)

    def parameters(self) -> list[torch.Tensor]:
        return [t for w in self.weights.values() for t in w.values()]

    def tensors(self) -> dict:
        return {f"{name}.{k}": t.detach().clone() for name, w in self.weights.items() for k, t in w.items()}

    def output(self, name: str, a: torch.Tensor) -> torch.Tensor:
        """e(a) of eraser ``name`` (float32)."""
        w = {k: t.to(a.device) for k, t in self.weights[name].items()}
        hidden = F.gelu(F.linear(a.float(), w["down.weight"], w["down.bias"]))
        return F.linear(hidden, w["up.weight"], w["up.bias"])

    def install(self, outputs: dict | None = None) -> list:
        """Hooks on every attn2 adding its eraser's output; returns the handles. ``outputs``:
        a dict that receives each layer's eraser output (the regulariser's input)."""
        def hook_for(name):
            def hook(module, inputs, output):
                extra = self.output(name, output)
                if outputs is not None:
                    outputs[name] = extra
                return output + extra.to(output.dtype)
            return hook
        return [self.layers[name].register_forward_hook(hook_for(name)) for name in self.weights]

    @contextmanager
    def active(self, outputs: dict | None = None):
        """The erasers on for the ``with`` block (training: the model being trained)."""
        handles = self.install(outputs)
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


# --- the concept-localised mask -------------------------------------------------------------


def layer_grid(pixels: int, height: int, width: int) -> tuple[int, int]:
    """(h, w) of a UNet level holding ``pixels`` positions, for a latent of height x width."""
    scale = math.sqrt(height * width / pixels)
    return max(1, round(height / scale)), max(1, round(width / scale))


def concept_masks(maps: dict, grids: dict, resolution: int, threshold: float) -> dict:
    """Receler's binary mask per layer, (B, pixels, 1), from ``maps`` {layer: (B, pixels)} (the
    concept tokens' attention, averaged over tokens and heads) on ``grids`` {layer: (h, w)}.

    The maps of the level nearest ``resolution`` on a side (in log scale; ties to the finer
    level) are averaged, min-max normalised per image and thresholded (>= ``threshold`` is
    inside); the mask is then resized (nearest) to every layer's grid. A flat map (max = min)
    normalises to 0: no inside unless ``threshold`` is 0, so the regulariser covers the image."""
    sides = sorted({h for h, _ in grids.values()})
    level = min(sides, key=lambda s: (abs(math.log(s / resolution)), -s))
    chosen = [maps[n].view(-1, *grids[n]) for n in maps if grids[n][0] == level]
    average = torch.stack(chosen).float().mean(0)  # (B, h, w)
    low = average.amin(dim=(1, 2), keepdim=True)
    high = average.amax(dim=(1, 2), keepdim=True)
    normalised = (average - low) / (high - low).clamp_min(1e-12)
    binary = (normalised >= threshold).float()
    return {n: F.interpolate(binary[:, None], size=grids[n], mode="nearest").flatten(1)[..., None]
            for n in maps}


def mask_regulariser(outputs: dict, masks: dict) -> torch.Tensor:
    """L_reg: per layer, the eraser output's mean square over channels, summed over the pixels
    outside the mask and divided by their count; averaged over layers."""
    terms = []
    for name, out in outputs.items():
        outside = 1 - masks[name].to(out.device, out.dtype)
        terms.append(((out * outside) ** 2).mean(-1).sum() / (outside.sum() + 1e-9))
    return torch.stack(terms).mean()


# --- training ------------------------------------------------------------------------------
def concept_positions(pipe, concept: str) -> list[int]:
    """Positions of the concept's tokens in its own prompt (after the start token)."""
    return list(range(1, 1 + len(pipe.tokenizer(concept, add_special_tokens=False).input_ids)))


def soft_prompt_ids(pipe, concept: str, k: int) -> torch.Tensor:
    """Token ids of "{concept} * ... *" (k placeholders); an error unless the placeholders sit
    right after the concept's tokens, untruncated."""
    tok = pipe.tokenizer
    concept_ids = tok(concept, add_special_tokens=False).input_ids
    if 2 + len(concept_ids) + k > tok.model_max_length:
        raise EraselabError(f"receler: {concept!r} ({len(concept_ids)} tokens) plus {k} attack_tokens "
                            f"exceed the text encoder's {tok.model_max_length} tokens; lower attack_tokens")
    ids = tokenize(pipe, [" ".join([concept] + [PLACEHOLDER] * k)])
    slots = (ids[0] == placeholder_id(tok)).nonzero().flatten().tolist()
    if slots != list(range(1 + len(concept_ids), 1 + len(concept_ids) + k)) \
            or ids[0, 1:1 + len(concept_ids)].tolist() != concept_ids:
        raise EraselabError(f"receler: the soft tokens do not sit right after the tokens of "
                            f"{concept!r} (does the name contain {PLACEHOLDER!r}?)")
    return ids


def train_erasers(ctx) -> Erasers:
    """Train Receler's erasers on ``ctx.pipe`` (its weights untouched); returns them."""
    pipe, cfg, concept = ctx.pipe, ctx.config, ctx.concept.name
    unet, te = pipe.unet, pipe.text_encoder
    enable_grads(pipe, [])
    adversary = cfg.attack_steps > 0 and cfg.attack_start < cfg.steps
    ids_adv = soft_prompt_ids(pipe, concept, cfg.attack_tokens) if adversary else None
    positions = concept_positions(pipe, concept)
    erasers = Erasers.around(unet, cfg.rank, ctx.generator)
    opt = torch.optim.Adam(erasers.parameters(), lr=cfg.lr)
    with torch.no_grad():
        emb_c = encode_ids(te, tokenize(pipe, [concept]))
        emb_0 = encode_ids(te, tokenize(pipe, [""]))
    width = te.get_input_embeddings().weight.shape[1]
    delta = torch.rand((cfg.attack_tokens, width), generator=ctx.generator).to(emb_c.device)
    delta.requires_grad_(True)
    delta_opt = torch.optim.Adam([delta], lr=cfg.attack_lr, weight_decay=cfg.attack_weight_decay)
    scheduler = training_scheduler(pipe)
    size = unet.config.sample_size
    shape = (1, unet.config.in_channels, size, size)
    soft = Placeholders(te, pipe.tokenizer) if adversary else None

    def frozen_part(z, t):
        """e_0, e_c of the frozen model (erasers off) and the concept masks of its c pass."""
        with torch.no_grad(), capture_cross_attention(unet, positions, by_layer=True) as stores:
            e_0, e_c = unet_out(unet, torch.cat([z, z]), t, torch.cat([emb_0, emb_c])).chunk(2)
        maps, grids = {}, {}
        for name, (probs,) in stores.items():
            per_image = probs.view(2, -1, *probs.shape[1:])[1:]  # the c half: (1, heads, pixels, tokens)
            maps[name] = per_image.float().mean(-1).mean(1)
            grids[name] = layer_grid(probs.shape[1], *z.shape[-2:])
        return e_0, e_c, concept_masks(maps, grids, cfg.mask_resolution, cfg.mask_threshold)

    def loss_fn(step):
        with torch.no_grad(), erasers.active():
            z, t, _ = esd_latents(unet, scheduler, emb_c, emb_0, cfg.ddim_steps, cfg.start_guidance, 1,
                                  ctx.generator, shape)
        t = t[0]
        e_0, e_c, masks = frozen_part(z, t)
        outputs: dict = {}
        if adversary and step >= cfg.attack_start:
            for i in range(cfg.attack_steps):
                last = i == cfg.attack_steps - 1
                soft.vectors = delta
                with erasers.active(outputs if last else None):
                    pred = unet_out(unet, z, t, encode_ids(te, ids_adv))
                soft.vectors = None
                attack = F.mse_loss(pred.float(), e_c.float())
                # the adversary's gradient alone; the last pass's graph also serves the erasers
                (grad,) = torch.autograd.grad(attack, [delta], retain_graph=last)
                delta.grad = grad
                delta_opt.step()
        else:
            with erasers.active(outputs):
                pred = unet_out(unet, z, t, emb_c)
        loss = F.mse_loss(pred.float(), (e_0 - cfg.guidance * (e_c - e_0)).float())
        if cfg.reg_weight > 0:
            loss = loss + cfg.reg_weight * mask_regulariser(outputs, masks)
        return loss

    try:
        optimise(ctx, erasers.parameters(), opt, cfg.steps, loss_fn)
    finally:
        if soft is not None:
            soft.remove()
    return erasers


class Receler(ErasureMethod):
    """Receler: erasers after every cross-attention, trained against a soft-prompt adversary."""

    Config = RecelerConfig
    inference_time = True     # no UNet weight changes: the erasers are the edit's own tensors
    persistent_hooks = True   # ... always on, so they live in the UNet while the edit is loaded
    quick_overrides = {"steps": 2, "ddim_steps": 3, "attack_steps": 2, "attack_tokens": 2, "rank": 4}

    def inference_spec(self, ctx):
        erasers = train_erasers(ctx)
        ctx.inference_tensors.update(erasers.tensors())
        return {"method": self.name, "concept": ctx.concept.name, "rank": ctx.config.rank,
                "erasers": len(erasers.weights)}

    @classmethod
    def install_hooks(cls, pipe, spec, tensors):
        return Erasers.from_tensors(pipe.unet, tensors, where="receler edit").install()
