"""Per-model-family hyperparameter defaults: the ONE place where they differ from the authors'.

Each method's ``Config`` dataclass carries its authors' defaults, which are the defaults for real
Stable Diffusion (family ``"sd"``). The mini world (family ``"mini"``: the small SD trained in
bench/miniworld, and the tiny test pipeline) has fewer weights and coarser concepts, so iteration
and image counts scale down, and some learning rates go up. Everything here can be overridden per
run (``--set lr=1e-4 --set steps=40``), which is how lr and steps are swept.

The family of a pipeline is detected by ``detect_family``: an explicit marker
(``pipe.config.eraselab_family`` or the text encoder config's ``eraselab_family``), else the text
encoder's hidden size (<= 256 is "mini"; SD 1.x has 768, SD 2.x 1024).

Table (what differs from the authors' defaults; blank = authors' value):

| method       | sd (authors)                               | mini                                  |
|--------------|--------------------------------------------|---------------------------------------|
| fewshot-te   | lr 1e-5, 8 steps, k 4, batch 2             | lr 1.2e-4, 40 steps                   |
| esd-x, esd-x-strict | lr 1e-5, 1000 steps, 50 DDIM steps  | lr 1e-3, 100 steps, 25 DDIM steps     |
| esd-u        | lr 1e-5, 1000 steps, 50 DDIM steps         | lr 1e-6, 50 steps, 25 DDIM steps      |
| uce          | lam 0.5, erase 1, preserve 1               |                                       |
| ca           | lr 2e-6 x batch 4, 100 steps, 1000 anchors | lr 6e-5 x batch, 40 steps, 16 anchors |
| fmn          | lr 2e-6, 35 steps                          |                                       |
| ga           | lr 1e-5, 8 steps, alpha 0.1                | lr 3e-5, 25 DDIM steps for retain set |
| salun        | lr 1e-5, 100 steps, alpha 0.5, mask 50%    | lr 3e-5, 40 steps                     |
| advunlearn   | lr 1e-5, 1000 its (200 no attack), 30 atk  | lr 3e-5, 100 its (8 no attack), 5 atk |
| sld, negative-prompt           | presets as published     |                                       |

How the mini values are chosen: lr and steps of every trained method by ``eraselab tune``
(bench/tuning.py) on its held-apart tuning split (notre dame, apple, neon; training-caption
phrasing that no evaluation template uses; own seeds), with the rule fixed before looking: among
settings that keep unrelated detection within 10 points of the original model's, the lowest
target detection, ties (1/32) to fewer steps, then the smaller lr. Each grid was first the
authors' lr, 10x and 100x it, at two step counts (the authors' or the earlier mini guess, and a
longer one); where the choice's next larger lr and steps both broke the tolerance, the values
between them were added (fewshot-te: lr 1.2e-4, 60 steps). Results per setting:
benchmarks/results/tune_<method>.json.

fewshot-te is tuned on the shipped 12.6M-parameter UNet and the current split (32 target and 64
unrelated images per concept, the tolerance at 3.3 standard errors), where the original model
detects the target in 0.875 of images and unrelated subjects in 0.979; so is ca (record
benchmarks/results/tune_ca_wide_unet.json) and fmn (tune_fmn_wide_unet.json: the authors' lr
2e-6 still wins, target 0.85, every 10x higher lr drops unrelated detection to 0.40 or below)
and esd-x (tune_esd_x_wide_unet.json: the same choice as on the earlier UNet; original 0.990 /
0.964 on this split).
The other rows are from
the earlier 3.2M-parameter UNet and a 16 + 16-image split (original 0.69 / 0.69), not yet re-tuned
on the shipped model (issue 20):

| method       | grid (steps; lr)                          | chosen          | target / unrelated |
|--------------|-------------------------------------------|-----------------|--------------------|
| fewshot-te | steps 40, 60, 80; lr 1e-4, 1.2e-4, 1.5e-4, 2e-4, 3e-4 (11 settings) | steps 40, lr 1.2e-4 | 0.45 / 0.89 |
| esd-x | steps 50, 100; lr 1e-05, 0.0001, 0.001 (shipped UNet) | steps 100, lr 0.001 | 0.22 / 0.90 |
| esd-x-strict | steps 50, 100; lr 1e-05, 0.0001, 0.001 | steps 100, lr 0.001 | 0.04 / 0.62 |
| esd-u | steps 50, 100; lr 1e-06, 3e-06, 1e-05, 0.0001, 0.001 | steps 50, lr 1e-06 | 0.62 / 0.67 |
| ca | steps 40; lr 2e-05, 6e-05, 0.0002, 0.0006 (shipped UNet) | steps 40, lr 6e-05 | 0.07 / 0.93 |
| fmn | steps 35; lr 2e-06, 2e-05, 0.0002, 0.002 (shipped UNet) | steps 35, lr 2e-06 | 0.85 / 0.96 |
| ga | steps 8, 40; lr 1e-05, 3e-05, 0.0001, 0.001 | steps 8, lr 3e-05 | 0.62 / 0.79 |
| salun | steps 40, 100; lr 1e-05, 3e-05, 0.0001, 0.001 | steps 40, lr 3e-05 | 0.42 / 0.67 |
| advunlearn | steps 40, 100; lr 1e-05, 3e-05, 0.0001, 0.001 | steps 100, lr 3e-05 | 0.15 / 0.62 |

On the shipped UNet fewshot-te is close to all-or-nothing: every setting that erases more than
the chosen one (target 0-14%) costs unrelated detection 14-29 points. Several methods cannot
erase on the mini world without breaking unrelated prompts, and the rule then keeps a setting
that barely erases (esd-u, fmn, ga); the benchmark reports that, it does not hide it. Counts that
only set cost (DDIM steps for sampling z_t, anchor and retain images, attack steps) were scaled
down by hand and not swept.
"""

from __future__ import annotations

from bench.core.errors import EraselabError

FAMILIES = ("sd", "mini")
MINI_MAX_HIDDEN = 256

# method name -> family -> {config key: value}; missing entries mean "the authors' default".
DEFAULTS: dict[str, dict[str, dict]] = {
    # mini: every lr/steps value below was chosen by eraselab tune (module docstring).
    "fewshot-te": {"sd": {}, "mini": {"lr": 1.2e-4, "steps": 40}},
    # 25 DDIM steps keep sampling z_t cheap (cost only, not swept); the mini UNet samples 32
    # trajectories ahead in one batch (speed only), SD's 8 (memory).
    "esd-x": {"sd": {}, "mini": {"lr": 1e-3, "steps": 100, "ddim_steps": 25, "sample_batch": 32}},
    "esd-x-strict": {"sd": {}, "mini": {"lr": 1e-3, "steps": 50, "ddim_steps": 25, "sample_batch": 32}},
    # The whole UNet: every lr >= 3e-6 cost unrelated prompts more than 10 points on the split.
    "esd-u": {"sd": {}, "mini": {"lr": 1e-6, "steps": 50, "ddim_steps": 25, "sample_batch": 32}},
    "uce": {"sd": {}, "mini": {}},
    # CA's anchor set: the authors generate 1,000 images; 16 suffice for the mini world's glyphs.
    "ca": {"sd": {}, "mini": {"lr": 6e-5, "steps": 40, "anchor_images": 16, "gen_steps": 25}},
    # The authors' lr and steps won on the split (higher lrs broke unrelated prompts).
    "fmn": {"sd": {}, "mini": {}},
    "ga": {"sd": {}, "mini": {"lr": 3e-5, "gen_steps": 25}},
    "salun": {"sd": {}, "mini": {"lr": 3e-5, "steps": 40, "gen_steps": 25}},
    # Tuned with 8 warm-up iterations without attack (cost choice, kept when 100 steps won).
    "advunlearn": {"sd": {}, "mini": {"lr": 3e-5, "steps": 100, "warmup_steps": 8, "attack_steps": 5,
                                      "ddim_steps": 25}},
    "rece": {"sd": {}, "mini": {}},
    # The mini world samples 12-25 steps at guidance 6: the first 20% of 25 steps, as 10 of 50.
    "conceptprune": {"sd": {}, "mini": {"sample_steps": 25, "first_steps": 5, "guidance": 6.0}},
    "adavd": {"sd": {}, "mini": {}},
    # 100 steps: the EMA decay keeps the authors' share of the run in the released average (2/3).
    "sdd": {"sd": {}, "mini": {"lr": 1e-4, "steps": 100, "ema_decay": 0.985, "ddim_steps": 25}},
    "seot": {"sd": {}, "mini": {}},
    "safree": {"sd": {}, "mini": {}},
    # before_step 7 of 50 scales to 4 of 25 (cost-only counts as ESD's).
    "ant": {"sd": {}, "mini": {"lr": 5e-4, "steps": 100, "ddim_steps": 25, "before_step": 4, "sample_batch": 32}},
    # 16 generated concept images, cycled (cost only, as CA's anchors).
    "advanchor": {"sd": {}, "mini": {"lr": 1e-4, "images": 16, "gen_steps": 25, "gen_guidance": 6.0}},
    # Generated forget and retain sets of 16 images each, 25 steps (cost only).
    "erasediff": {"sd": {}, "mini": {"lr": 1e-4, "epochs": 5, "batch_size": 4, "forget_images": 16,
                                     "retain_images": 16, "gen_steps": 25, "gen_guidance": 6.0}},
    "scissorhands": {"sd": {}, "mini": {"lr": 1e-4, "steps": 40, "batch_size": 4, "forget_images": 16,
                                        "retain_images": 16, "gen_steps": 25, "gen_guidance": 6.0}},
    # 16 surrogate and replay images, a Fisher over 16 replay images x 10 timesteps (cost only).
    "selective-amnesia": {"sd": {}, "mini": {"lr": 1e-4, "steps": 100, "surrogate_images": 16,
                                             "replay_images": 16, "fisher_samples": 16,
                                             "fisher_timesteps": 10, "gen_steps": 25, "gen_guidance": 6.0}},
    # No Grounded-SAM here: rendered images with the renderer's object masks. The mini text
    # encoder never trained "ground" and "art" is half of the style "pixel art", so the anchor is
    # the empty word. Generation at 25 steps, guidance 6 as the other generating methods (used
    # only with masks=whole). lr provisional: at the authors' 1e-5 the adapter's loss does not move.
    "mace": {"sd": {}, "mini": {"masks": "renderer", "anchor": "", "lr": 1e-3, "steps": 50,
                                "gen_steps": 25, "gen_guidance": 6.0}},
    # z_t from 15 DDIM steps (cost only, not swept): SPM samples with the model it trains, so
    # nothing runs ahead in batches as in ESD.
    "spm": {"sd": {}, "mini": {"lr": 1e-3, "steps": 100, "warmup_steps": 10, "ddim_steps": 15}},
    # Provisional (not yet tuned): a fifth of the iterations at ~3x lr, 5 attack steps (as
    # advunlearn's mini), rank 32 (SD's 128 over its narrowest 320-wide attn2, on the mini's
    # 64), the mask from the 8x8 level (SD's 16x16 is its coarsest outside the mid block) and
    # z_t from 15 DDIM steps (cost only: sampled by the model being trained, as SPM's).
    "receler": {"sd": {}, "mini": {"lr": 1e-3, "steps": 100, "attack_steps": 5, "rank": 32,
                                   "mask_resolution": 8, "ddim_steps": 15}},
    "spm-plain": {"sd": {}, "mini": {"lr": 1e-3, "steps": 100, "warmup_steps": 10, "ddim_steps": 15}},
    # Provisional, not tuned: 25 DDIM steps with early steps 0..12 (the authors' 0..25 of 50),
    # 16 concept and 32 unconditional trajectories (cost only), lr 10x the authors'. lam 1e-3,
    # not 0: the tiny encoder's outputs lie in a hyperplane (its final layer norm has no bias),
    # the mini one's nearly so, and lam = 0 is singular there; 1e-3 moves the mini mapping <1%.
    "trce": {"sd": {}, "mini": {"lam": 1e-3, "lr": 1e-5, "concept_trajectories": 16,
                                "uncond_trajectories": 32, "ddim_steps": 25, "early_steps": 12,
                                "sample_batch": 32}},
    # Layer 2 of the mini encoder's 4 is the nearest depth to the authors' 9 of 12; the shipped SAE
    # (bench/miniworld/train_sae.py) is trained there. Strength stays the authors' (not swept).
    "concept-steerers": {"sd": {}, "mini": {"layer": 2, "sae": "miniworld"}},
    "negative-prompt": {"sd": {}, "mini": {}},
    # Provisional, not tuned: the README example's 2 rounds and 2 tokens; 50 erase steps; both lrs
    # at 1/10 of the authors' as esd-u's tuning found for the same non-xattn set; inversion as
    # the mini concept-inversion attack (100 steps, 5e-3 x batch 4, 8 images a round); a
    # gallery of 16 generated images, 25 DDIM steps (cost only).
    "stereo": {"sd": {}, "mini": {"n_iterations": 2, "num_of_adv_concepts": 2, "iterations": 50,
                                  "ste_lr": 5e-7, "reo_lr": 2e-6, "ti_steps": 100, "ti_batch": 4,
                                  "gallery_images": 16, "gen_steps": 25, "gen_guidance": 6.0,
                                  "ddim_steps": 25}},
    "sld": {"sd": {}, "mini": {}},
}


def detect_family(pipe) -> str:
    """"sd" for real Stable Diffusion, "mini" for the mini world / tiny pipelines."""
    pipe = getattr(pipe, "pipe", pipe)  # an inference-time wrapper holds the real pipeline
    for config in (getattr(pipe, "config", None),
                   getattr(getattr(pipe, "text_encoder", None), "config", None)):
        marker = getattr(config, "eraselab_family", None) if config is not None else None
        if marker is None and isinstance(config, dict):
            marker = config.get("eraselab_family")
        if marker is not None:
            if marker not in FAMILIES:
                raise EraselabError(f"pipeline marks family {marker!r}; expected one of {FAMILIES}")
            return marker
    text_encoder = getattr(pipe, "text_encoder", None)
    if text_encoder is None:
        raise EraselabError("the pipeline has no text encoder; eraselab edits Stable Diffusion pipelines")
    return "mini" if text_encoder.config.hidden_size <= MINI_MAX_HIDDEN else "sd"


def family_defaults(method: str, family: str) -> dict:
    if family not in FAMILIES:
        raise EraselabError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    return dict(DEFAULTS.get(method, {}).get(family, {}))
