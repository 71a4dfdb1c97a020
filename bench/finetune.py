"""Fine-tuning a pipeline (edited or not) with the plain denoising loss, checkpointed on a ladder.

    from bench.finetune import Recipe, finetune
    recipe = Recipe(module="unet", mode="lora", lr=8e-4, batch_size=2, rank=4, steps=(0, 10, 50))
    finetune(pipe, pairs, recipe, seed=0, on_checkpoint=lambda step, result: result.save(f"ck{step}"))

The resurgence studies' engine (docs/protocol.md, "Resurgence"). One module is trained: the
``unet`` (on captions encoded once by the pipeline's text encoder) or the ``text_encoder``
(through the frozen UNet), either every parameter (``full``) or a LoRA adapter on the attention
projections (``lora``, built with peft: rank ``rank``, alpha = rank, the A matrices drawn from the
run's own generator, B zero), on a deep copy, so the pipeline itself never changes. After each
ladder step ``on_checkpoint(step, EditResult)`` gets the checkpoint as an edit: a delta against
the *base* model that holds the pipeline's own edit (an erasure) plus the fine-tuning's change
(a LoRA merged into the weights it adapts), with the fine-tune appended to the edit's record, so
the runner saves and loads it like any edit (safetensors; nothing is unpickled).

Every random choice (batches, timesteps, noise, LoRA init) comes from one generator seeded by
``seed``; the images are encoded to latents once. A non-finite loss or weight stops with a
one-line error naming the step. AdamW (weight decay 1e-2, as the diffusers fine-tuning script),
gradient norm clipped at 1, constant learning rate, no augmentation.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Callable

from bench.core.errors import EraselabError

VERSION = "1"  # part of every checkpoint's address: bump when fine-tuning's outputs change
MODULES = ("unet", "text_encoder")
MODES = ("lora", "full")
# LoRA targets: the attention projections, the modules diffusers' and peft's SD recipes adapt
LORA_TARGETS = {"unet": ("to_q", "to_k", "to_v", "to_out.0"),
                "text_encoder": ("q_proj", "k_proj", "v_proj", "out_proj")}

# The recipe per model family, module and mode: the one place fine-tuning budgets scale. "sd":
# the published benign fine-tuning settings, full = ResAlign's (lr 1e-5, effective batch 4),
# LoRA = MemoRa's (rank 4, lr 1e-4, batch 1), for the text encoder as for the UNet. "mini": the
# same ratios to the mini world's own pre-training lr (UNet 8e-4, text encoder 5e-4; SD's was
# 1e-4): full = a tenth of it, LoRA = all of it, batch 2.
RECIPE_DEFAULTS = {
    "sd": {"unet": {"full": {"lr": 1e-5, "batch_size": 4}, "lora": {"lr": 1e-4, "batch_size": 1, "rank": 4}},
           "text_encoder": {"full": {"lr": 1e-5, "batch_size": 4},
                            "lora": {"lr": 1e-4, "batch_size": 1, "rank": 4}}},
    "mini": {"unet": {"full": {"lr": 8e-5, "batch_size": 2}, "lora": {"lr": 8e-4, "batch_size": 2, "rank": 4}},
             "text_encoder": {"full": {"lr": 5e-5, "batch_size": 2},
                              "lora": {"lr": 5e-4, "batch_size": 2, "rank": 4}}},
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    module: str                 # "unet" or "text_encoder"
    mode: str                   # "lora" or "full"
    lr: float
    batch_size: int
    steps: tuple                # the checkpoint ladder: increasing, non-negative
    rank: int = 4               # LoRA only
    weight_decay: float = 1e-2
    grad_clip: float = 1.0

    def problem(self) -> str | None:
        """A one-line message for a recipe that cannot run, or None."""
        if self.module not in MODULES:
            return f"module must be one of {', '.join(MODULES)}, got {self.module!r}"
        if self.mode not in MODES:
            return f"mode must be one of {', '.join(MODES)}, got {self.mode!r}"
        if not self.lr > 0 or self.batch_size < 1 or self.rank < 1:
            return "lr, batch_size and rank must be positive"
        steps = list(self.steps)
        if not steps or any(not isinstance(s, int) or s < 0 for s in steps) \
                or any(b <= a for a, b in zip(steps, steps[1:])):
            return f"steps must be increasing non-negative integers, got {steps}"
        return None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["steps"] = list(self.steps)
        if self.mode == "full":
            d.pop("rank")
        return d


def trained_names(module, recipe: Recipe) -> list[str]:
    """The parameter names (of ``module``) that the recipe may change."""
    if recipe.mode == "full":
        return [n for n, _ in module.named_parameters()]
    targets = LORA_TARGETS[recipe.module]
    import torch
    return [f"{name}.weight" for name, m in module.named_modules()
            if isinstance(m, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets)]


def _with_lora(module, recipe: Recipe, generator):
    import math

    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    config = LoraConfig(r=recipe.rank, lora_alpha=recipe.rank, lora_dropout=0.0,
                        target_modules=list(LORA_TARGETS[recipe.module]))
    module = inject_adapter_in_model(config, module)
    layers = {name: m for name, m in module.named_modules() if isinstance(m, LoraLayer)}
    if not layers:
        raise EraselabError(f"fine-tuning: no {', '.join(LORA_TARGETS[recipe.module])} layers in the "
                            f"{recipe.module} to put a LoRA on")
    with torch.no_grad():
        for name in sorted(layers):
            a = layers[name].lora_A["default"].weight
            bound = 1.0 / math.sqrt(a.shape[1])  # peft's kaiming-uniform(a=sqrt 5) bound, our RNG
            a.copy_((torch.rand(a.shape, generator=generator) * 2 - 1) * bound)
            layers[name].lora_B["default"].weight.zero_()
    return module, layers


def _changed(trained, layers, recipe: Recipe, current: dict, prefix: str) -> dict:
    """{pipeline tensor name: value} of what fine-tuning has changed so far."""
    import torch
    out = {}
    with torch.no_grad():
        if recipe.mode == "lora":
            for name, layer in layers.items():
                key = f"{prefix}.{name}.weight"
                out[key] = current[key].detach() + layer.get_delta_weight("default").to(current[key].dtype)
        else:
            for name, p in trained.named_parameters():
                key = f"{prefix}.{name}"
                if not torch.equal(p.detach(), current[key].detach()):
                    out[key] = p.detach().clone()
    return out


def finetune(pipe, pairs: list, recipe: Recipe, seed: int, on_checkpoint: Callable,
             describe: dict | None = None, progress: bool = True, skip: Callable | None = None) -> None:
    """Fine-tune a copy of ``pipe``'s ``recipe.module`` on ``pairs`` ([(PIL image, caption)]) and
    hand each ladder checkpoint to ``on_checkpoint(step, EditResult)``. ``describe``: more keys
    for the fine-tune's entry in the edit record (its data, its study); ``skip(step)``: True for a
    checkpoint already saved (it is not built again; the training still passes through it)."""
    import random

    import torch

    from methods import common
    from methods.delta import EditResult, build_record, delta_against_base, edit_state, named_tensors, unwrap

    problem = recipe.problem()
    if problem:
        raise EraselabError(f"fine-tuning recipe: {problem}")
    if not pairs:
        raise EraselabError("fine-tuning: no image-caption pairs")
    inner = unwrap(pipe)
    state = edit_state(inner)
    generator = torch.Generator().manual_seed(int(seed))
    t0 = time.perf_counter()
    latents = common.images_to_latents(inner, [im for im, _ in pairs], generator, random.Random(seed))
    ids = common.tokenize(inner, [c for _, c in pairs])
    scheduler = common.training_scheduler(inner)
    current = named_tensors(inner)
    base_delta = delta_against_base(inner)  # the pipeline's own edit (an erasure), if any

    source = getattr(inner, recipe.module)
    trained = copy.deepcopy(source)
    layers = {}
    for p in trained.parameters():
        p.requires_grad_(recipe.mode == "full")
    if recipe.mode == "lora":
        trained, layers = _with_lora(trained, recipe, generator)
    trained.eval()  # no dropout: training is deterministic
    params = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    unet = trained if recipe.module == "unet" else inner.unet
    if recipe.module == "unet":
        with torch.no_grad():
            cond_all = common.encode_ids(inner.text_encoder, ids)
    flags = {id(p): p.requires_grad for p in inner.unet.parameters()}
    for p in inner.unet.parameters():
        p.requires_grad_(False)  # the pipeline's own UNet never trains (a copy does)

    def checkpoint(step: int) -> None:
        if skip is not None and skip(step):
            return
        changed = _changed(trained, layers, recipe, current, recipe.module) if step else {}
        delta = {**base_delta, **changed}
        originals = {n: state.originals.get(n, current[n].detach()) for n in delta}
        entry = {"method": "finetune", "recipe": recipe.to_dict(), "step": step, "seed": int(seed),
                 "images": len(pairs), **(describe or {}),
                 "seconds": round(time.perf_counter() - t0, 4)}
        record = build_record(inner, [*state.edits, entry], list(state.inference), delta, originals)
        # the edit's own inference tensors (an adapter, erasers) travel with every checkpoint
        on_checkpoint(step, EditResult(pipeline=None, delta=delta, record=record,
                                       inference_tensors=dict(state.inference_tensors)))

    last = recipe.steps[-1]
    try:
        if recipe.steps[0] == 0:
            checkpoint(0)
        from tqdm import tqdm
        import sys
        bar = tqdm(total=last, desc=f"fine-tune {recipe.module} {recipe.mode}", unit="step",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        order: list[int] = []
        ladder = set(recipe.steps)
        for step in range(1, last + 1):
            if len(order) < recipe.batch_size:  # epochs of a seeded permutation
                order += torch.randperm(len(pairs), generator=generator).tolist()
            batch, order = order[:recipe.batch_size], order[recipe.batch_size:]
            z = latents[batch]
            noisy, target, t = common.noise_latents(scheduler, z, generator)
            cond = cond_all[batch] if recipe.module == "unet" else common.encode_ids(trained, ids[batch])
            loss = common.denoising_loss(unet, noisy, t, cond, target)
            if not torch.isfinite(loss):
                raise EraselabError(f"fine-tuning {recipe.module} ({recipe.mode}, lr {recipe.lr}): loss "
                                    f"is {loss.item()} at step {step}/{last}; lower the lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
            optimizer.step()
            if not all(torch.isfinite(p).all() for p in params):
                raise EraselabError(f"fine-tuning {recipe.module} ({recipe.mode}, lr {recipe.lr}): "
                                    f"weights became non-finite at step {step}/{last}; lower the lr")
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4g}")
            if step in ladder:
                checkpoint(step)
        bar.close()
    finally:
        for p in inner.unet.parameters():
            p.requires_grad_(flags[id(p)])
