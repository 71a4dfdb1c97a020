"""Per-concept fidelity of a mini SD on the *selection split*: what model-development choices
(which UNet to keep, which concepts a fine-tune should see more often) are made on, so that the
model card's numbers (catalog prompts, seed namespace 'card') are never the ones tuned against.

The selection split: for each catalog concept, N renders from seed namespace 'mini-sd-select'
(objects plain; a style on objects cycled through the catalog), their own training-style
captions as prompts (never the catalog's evaluation prompts), fresh generation seeds. Measured:
- renders: the evaluator on the renders themselves (its ceiling on this split);
- roundtrip: the evaluator after the pipeline's VAE encode -> decode (the decoder's ceiling);
- generated: the evaluator on the mini SD's generations (25 DDIM steps, guidance 6, as the card).
Writes benchmarks/results/mini_sd_selection_<label>.json with ``focus_weights`` = 2 - generated
rate per concept (1 for a concept always detected, 2 for one never detected): the sampling
weights `eraselab miniworld train unet --focus FILE` reads.

    python -m benchmarks.mini_sd_selection --label base [--n 16] [--model datasets/miniworld/v1/pipeline]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from benchmarks.results_io import RESULTS_DIR, machine, model_label, write_result

NAMESPACE = "mini-sd-select"


def selection_renders(catalog, n: int) -> dict:
    """concept name -> n renders of the selection split."""
    from bench.miniworld import render as mw
    objects = list(mw.OBJECTS) + list(mw.INSTANCES)
    out = {}
    for concept in catalog.concepts.values():
        if concept.is_style:
            out[concept.name] = [mw.render(objects[i % len(objects)], concept.name,
                                           mw.stable_seed(NAMESPACE, concept.name, i)) for i in range(n)]
        else:
            out[concept.name] = [mw.render(concept.name, "plain", mw.stable_seed(NAMESPACE, concept.name, i))
                                 for i in range(n)]
    return out


def to_pil(batch: torch.Tensor) -> list:
    """PIL images of a decoded (N, 3, H, W) batch in [-1, 1] (clamped)."""
    from PIL import Image
    return [Image.fromarray(((a.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8))
            for a in batch.float().clamp(-1, 1)]


def vae_roundtrip(vae, images: np.ndarray) -> list:
    from bench.miniworld.train_vae import roundtrip
    return to_pil(roundtrip(vae, images))


def measure(model: str, n: int, progress: bool = True) -> dict:
    from PIL import Image
    from tqdm import tqdm
    from bench.catalog import load_catalog
    from bench.generate import generate
    from bench.miniworld import render as mw
    from bench.core.paths import MINIWORLD_DIR
    from bench.pipeline_io import load_pipeline
    from detectors import SCORERS
    catalog = load_catalog("miniworld")
    pipe = load_pipeline(model, progress=False)
    vae = pipe.vae
    detector = SCORERS.get("miniworld-yolo")(miniworld_root=str(MINIWORLD_DIR))
    probe = SCORERS.get("miniworld-style-probe")(probe_dir=str(MINIWORLD_DIR / "probe"),
                                                 clip_root=str(MINIWORLD_DIR))
    renders = selection_renders(catalog, n)
    rates = {"renders": {}, "roundtrip": {}, "generated": {}}
    for concept in tqdm(catalog.concepts.values(), desc="selection split", disable=not progress):
        samples = renders[concept.name]
        prompts = [s.caption for s in samples]
        scorer = probe if concept.is_style else detector

        def rate(images):
            rows = scorer.score(images, prompts, [concept] * len(images))
            return round(float(np.mean([bool(r["detected"]) for r in rows])), 4)
        rates["renders"][concept.name] = rate([Image.fromarray(s.image) for s in samples])
        rates["roundtrip"][concept.name] = rate(vae_roundtrip(vae, np.stack([s.image for s in samples])))
        seeds = [mw.stable_seed(NAMESPACE, "generate", concept.name, i) for i in range(n)]
        rates["generated"][concept.name] = rate(generate(pipe, prompts, seeds, steps=25, guidance=6.0,
                                                         batch_size=32))
    return rates


def main(argv: list[str] | None = None) -> int:
    from bench.core.paths import MINIWORLD_DIR
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", required=True, help="names the result file (e.g. base, focus)")
    p.add_argument("--n", type=int, default=16, help="renders per concept")
    p.add_argument("--model", default=str(MINIWORLD_DIR / "pipeline"))
    args = p.parse_args(argv)
    t0 = time.time()
    rates = measure(args.model, args.n)
    means = {k: round(float(np.mean(list(v.values()))), 4) for k, v in rates.items()}
    report = {"benchmark": "mini_sd_selection", "model": model_label(args.model), "n_per_concept": args.n,
              "namespace": NAMESPACE, "sampler": {"steps": 25, "guidance": 6.0, "scheduler": "DDIM"},
              "machine": machine(), "torch_threads": torch.get_num_threads(),
              "seconds": round(time.time() - t0, 1), "mean": means, **rates,
              "focus_weights": {k: round(2.0 - v, 4) for k, v in rates["generated"].items()}}
    out = write_result(report, RESULTS_DIR / f"mini_sd_selection_{args.label}.json")
    print(f"means {means} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
