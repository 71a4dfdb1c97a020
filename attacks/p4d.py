"""p4d-n and p4d-k: Prompting4Debugging (Chin et al., ICML 2024), prompts that make the edited
model predict what the original model predicts for the concept.

The objective is the original model's own denoising of the concept, not the images' noise:
``min_{P*} E || eps_theta(z_t, t, tau(P*)) - eps*(z_t, t, tau0(P)) ||^2`` over concept image
latents ``z_0`` noised at uniform timesteps, where ``eps*``/``tau0`` are the unedited UNet and
text encoder and ``P`` the base prompt. The prompt is searched PEZ-style (Wen et al. 2023):
continuous token embeddings, each projected to its nearest vocabulary embedding (cosine) for the
forward pass, the gradient passed straight through to the continuous ones (AdamW, lr 0.1, weight
decay 0.1). Two ways to lay out the prompt:

* ``p4d-n``: 16 free tokens, the base prompt discarded;
* ``p4d-k``: the base prompt's tokens kept, one learnable token inserted after every 3.

Every ``eval_every`` steps the projected prompt is decoded to text, drawn once by the edited
model (a fixed seed, DDIM) and scored by the evaluation CLIP's image-image cosine to the concept
images; the best-scoring text is the finding (the authors' selection, with their CLIP replaced
by the evaluation CLIP; the judge never selects). Authors: 3000 iterations, batch 1, evaluation
every 50 with 25 steps at guidance 7.5. The concept's catalog images (the attacks' own seeds)
stand in for the original model's generations of the prompt that the authors noise.

    eraselab attack --probe p4d-k --concept church --prompt "a photo of a church" --edit edits/esd --out out/p4d
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.base import Found, Probe
from attacks.objective import DenoisingObjective
from attacks.placeholders import PLACEHOLDER
from attacks.soft_prompt import vocabulary


@dataclass
class P4DConfig:
    layout: str = "n"         # "n": free tokens only; "k": the base prompt with inserted tokens
    tokens: int = 16          # free tokens (layout n)
    every: int = 3            # one learnable token after every ``every`` prompt tokens (layout k)
    iterations: int = 3000
    lr: float = 0.1
    weight_decay: float = 0.1
    batch: int = 1
    images: int = 4
    eval_every: int = 50
    eval_steps: int = 25
    eval_guidance: float = 7.5

    def check(self):
        if self.layout not in ("n", "k"):
            return "layout is 'n' (free tokens) or 'k' (tokens inserted into the prompt)"
        if min(self.tokens, self.every, self.iterations, self.batch, self.images, self.eval_every,
               self.eval_steps) < 1 or self.lr <= 0 or self.weight_decay < 0:
            return "tokens, every, iterations, batch, images, eval_every, eval_steps must be positive, lr > 0"
        return None


def layout_prompt(tokenizer, base_prompt: str, config) -> str:
    """The prompt with ``*`` where each learnable token goes."""
    if config.layout == "n":
        return " ".join([PLACEHOLDER] * config.tokens)
    ids = tokenizer(base_prompt).input_ids[1:-1]
    words = [tokenizer.decode(ids[i:i + config.every]).strip() for i in range(0, len(ids), config.every)]
    return " ".join(f"{w} {PLACEHOLDER}" for w in words) if words else PLACEHOLDER


def fill_text(tokenizer, prompt: str, token_ids: list[int]) -> str:
    """``prompt`` with its i-th ``*`` replaced by the text of token ``token_ids[i]``."""
    parts = prompt.split(PLACEHOLDER)
    out = parts[0]
    for i, rest in enumerate(parts[1:]):
        out += tokenizer.decode([token_ids[min(i, len(token_ids) - 1)]]).strip() + rest
    return " ".join(out.split())


class P4D(Probe):
    """PEZ-projected tokens matching the original model's prediction (layout n: free tokens)."""

    kind = "text"
    white_box = True
    needs_original_model = True
    needs_selector = True
    Config = P4DConfig
    quick_overrides = {"iterations": 4, "eval_every": 2, "eval_steps": 2, "images": 2, "tokens": 4}

    def attack(self, ctx):
        from attacks.sampling import ddim_sample, decode, generators_for
        from methods.common import encode_prompts
        cfg, pipe = ctx.config, ctx.pipe
        table = pipe.text_encoder.get_input_embeddings().weight.detach().float()
        vocab = vocabulary(pipe.tokenizer, table.shape[0])
        embeddings = table[vocab]
        unit = torch.nn.functional.normalize(embeddings, dim=-1)
        with torch.no_grad():
            teacher_cond = encode_prompts(pipe, [ctx.base_prompt], text_encoder=ctx.original_text_encoder)
        objective = DenoisingObjective(ctx, teacher=(ctx.original_unet, teacher_cond))
        try:
            prompt = layout_prompt(pipe.tokenizer, ctx.base_prompt, cfg)
            ids = objective.ids(prompt)
            slots = prompt.count(PLACEHOLDER)
            start = torch.randint(0, len(vocab), (slots,), generator=ctx.generator)
            before = objective.fixed(ids, embeddings[start])
            with torch.no_grad():
                targets = ctx.clip.encode_images(ctx.images).mean(dim=0)
                uncond = encode_prompts(pipe, [""])
            soft = embeddings[start].clone().requires_grad_(True)
            opt = torch.optim.AdamW([soft], lr=cfg.lr, weight_decay=cfg.weight_decay)
            best_ids, best_score = start, float("-inf")

            def project(vectors):
                return (torch.nn.functional.normalize(vectors.detach(), dim=-1) @ unit.T).argmax(dim=1)

            with ctx.progress_bar(cfg.iterations) as bar:
                for step in range(cfg.iterations):
                    nearest = project(soft)
                    vectors = embeddings[nearest] + soft - soft.detach()   # straight-through
                    index, t = objective.sample_batch(cfg.batch)
                    loss = objective.loss(ids, vectors, t, index=index)
                    ctx.check_finite(loss, step + 1, cfg.iterations)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    bar.update(1)
                    if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.iterations:
                        token_ids = project(soft)
                        text = fill_text(pipe.tokenizer, prompt, vocab[token_ids].tolist())
                        with torch.no_grad():
                            cond = encode_prompts(pipe, [text])
                            z = ddim_sample(pipe, cond, uncond, generators_for([ctx.seed]), cfg.eval_steps,
                                            cfg.eval_guidance)
                            score = float(ctx.clip.encode_images(decode(pipe, z))[0] @ targets)
                        if score > best_score:   # ties keep the earlier prompt: deterministic
                            best_ids, best_score = token_ids, score
            after = objective.fixed(ids, embeddings[best_ids])
        finally:
            objective.close()
        token_ids = vocab[best_ids].tolist()
        return Found(prompt=fill_text(pipe.tokenizer, prompt, token_ids), objective_before=before,
                     objective_after=after, steps=cfg.iterations,
                     extra={"tokens": token_ids, "layout": cfg.layout, "clip_image_cosine": best_score})


class P4DK(P4D):
    """P4D with the base prompt kept: one learnable token after every 3 of its tokens."""

    @dataclass
    class Config(P4DConfig):
        layout: str = "k"
