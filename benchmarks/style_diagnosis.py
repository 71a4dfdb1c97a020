"""Where a style's generations lose the style: a diagnosis on the selection split, never the card.

For one style (default pixel art, the mini SD's weakest concept on the model card), the style
probe's verdicts on N selection-split prompts (benchmarks/mini_sd_selection.py) under:
- the VAE's round trip of the renders with the posterior mean, one posterior sample and a
  doubled-std sample (does the UNet's training target, a posterior sample, still show the style?),
  and the posterior mean flipped left-right in latent space, decoded and flipped back (whether a
  flipped latent still decodes to the style, i.e. whether latent flips are a safe augmentation);
- img2img from the renders at a few strengths (how much of the noise schedule the UNet can take
  over before the style goes: a small loss at low strength points at fine detail, a large one only
  near strength 1 at the layout);
- text-to-image at a few guidance scales (how the style depends on classifier-free guidance).
It measures; nothing here changes a model or the card's sampler (25 DDIM steps, guidance 6).
Writes benchmarks/results/style_diagnosis_<style>[_<label>].json.

    python -m benchmarks.style_diagnosis [--style "pixel art"] [--n 48] [--model datasets/miniworld/v1/pipeline] [--label L]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import numpy as np
import torch

from benchmarks.mini_sd_selection import NAMESPACE, selection_renders, to_pil
from benchmarks.results_io import RESULTS_DIR, machine, model_label, write_result

GUIDANCES = (1.0, 2.0, 3.0, 6.0, 9.0)
STRENGTHS = (0.3, 0.6, 0.8)
STEPS, CARD_GUIDANCE, BATCH = 25, 6.0, 16


def _verdicts(probe, concept, images, prompts) -> dict:
    rows = probe.score(images, prompts, [concept] * len(images))
    return {"rate": round(float(np.mean([bool(r["detected"]) for r in rows])), 4),
            "predicted": dict(collections.Counter(r["style_pred"] for r in rows).most_common())}


@torch.no_grad()
def posterior_roundtrips(vae, images: np.ndarray) -> dict:
    """Decoded posterior mean, one sample, a sample with twice the std (fixed noise seed), and the
    mean flipped in latent space (its decoding flipped back, so only the encoder's asymmetry shows)."""
    from bench.miniworld.train_vae import to_vae_input
    post = vae.encode(to_vae_input(images)).latent_dist
    noise = torch.randn(post.mean.shape, generator=torch.Generator().manual_seed(0))
    out = {name: to_pil(vae.decode(post.mean + k * post.std * noise).sample)
           for name, k in (("mean", 0.0), ("sample", 1.0), ("sample_2x_std", 2.0))}
    out["mean_flipped_latent"] = to_pil(vae.decode(post.mean.flip(-1)).sample.flip(-1))
    return out


def measure(model: str, style: str, n: int, progress: bool = True) -> dict:
    from diffusers import StableDiffusionImg2ImgPipeline
    from PIL import Image
    from tqdm import tqdm
    from bench.catalog import load_catalog
    from bench.generate import generate
    from bench.miniworld import render as mw
    from bench.core.paths import MINIWORLD_DIR
    from bench.pipeline_io import load_pipeline
    from detectors import SCORERS
    catalog = load_catalog("miniworld")
    concept = catalog.concepts[style]
    if not concept.is_style:
        raise SystemExit(f"--style {style!r}: not a style of the miniworld catalog")
    pipe = load_pipeline(model, progress=False)
    probe = SCORERS.get("miniworld-style-probe")(probe_dir=str(MINIWORLD_DIR / "probe"),
                                                 clip_root=str(MINIWORLD_DIR))
    renders = selection_renders(catalog, n)[style]
    prompts = [s.caption for s in renders]
    seeds = [mw.stable_seed(NAMESPACE, "generate", style, i) for i in range(n)]
    out = {"renders": _verdicts(probe, concept, [Image.fromarray(s.image) for s in renders], prompts)}
    out["roundtrip"] = {name: _verdicts(probe, concept, images, prompts)
                        for name, images in posterior_roundtrips(pipe.vae.float(),
                                                                 np.stack([s.image for s in renders])).items()}
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    out["img2img"] = {}
    for strength in tqdm(STRENGTHS, desc="img2img", disable=not progress):
        images = []
        for start in range(0, n, BATCH):
            part = slice(start, start + BATCH)
            generators = [torch.Generator().manual_seed(int(s)) for s in seeds[part]]
            images += img2img(prompts[part], image=[Image.fromarray(s.image) for s in renders[part]],
                              strength=strength, guidance_scale=CARD_GUIDANCE, num_inference_steps=STEPS,
                              generator=generators).images
        out["img2img"][str(strength)] = _verdicts(probe, concept, images, prompts)
    out["text_to_image"] = {str(g): _verdicts(probe, concept, generate(pipe, prompts, seeds, steps=STEPS,
                                                                       guidance=g, batch_size=BATCH), prompts)
                            for g in tqdm(GUIDANCES, desc="guidance", disable=not progress)}
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.core.paths import MINIWORLD_DIR
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--style", default="pixel art")
    p.add_argument("--n", type=int, default=48, help="selection-split prompts")
    p.add_argument("--model", default=str(MINIWORLD_DIR / "pipeline"))
    p.add_argument("--label", default="", help="suffix of the result file (another model's run)")
    args = p.parse_args(argv)
    t0 = time.time()
    result = measure(args.model, args.style, args.n)
    report = {"benchmark": "style_diagnosis", "style": args.style, "model": model_label(args.model),
              "n": args.n, "namespace": NAMESPACE, "sampler": {"steps": STEPS, "scheduler": "DDIM",
                                                              "img2img_guidance": CARD_GUIDANCE},
              "machine": machine(), "torch_threads": torch.get_num_threads(),
              "seconds": round(time.time() - t0, 1), **result}
    stem = "_".join(filter(None, ("style_diagnosis", args.style.replace(" ", "_"), args.label)))
    out = write_result(report, RESULTS_DIR / f"{stem}.json")
    print(f"{args.style}: t2i {({g: v['rate'] for g, v in result['text_to_image'].items()})}, "
          f"img2img {({s: v['rate'] for s, v in result['img2img'].items()})} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
