"""Does an image depend on the batch it was generated in? Measured on the default model.

    python -m benchmarks.batch_invariance [--images 16] [--batch-sizes 1,5,16] [--device cpu]

The runner leaves the batch size out of an image's content address (bench/runner/plan.py), which
is right only if the same (prompt, seed) gives the same image at any batch size. This generates
the same images at several batch sizes and records the largest 8-bit pixel difference to the
first size's images. Writes benchmarks/results/batch_invariance.json. Not a test (the test on
the tiny pipeline is tests/test_runner.py::test_images_do_not_depend_on_the_batch_size).
"""

from __future__ import annotations

import argparse

from benchmarks.results_io import RESULTS_DIR, machine, model_label, write_result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-sizes", default="16,1,5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS_DIR / "batch_invariance.json"))
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from bench.catalog import load_catalog
    from bench.core.ids import image_seed
    from bench.generate import generate
    from bench.pipeline_io import default_model, load_pipeline

    pipe = load_pipeline(default_model(), device=args.device, progress=False)
    names = list(load_catalog("miniworld").concepts)
    prompts = [f"a photo of {names[i % len(names)]}" for i in range(args.images)]
    seeds = [image_seed("batch-invariance", i) for i in range(args.images)]
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    runs = {bs: [np.asarray(im, dtype=np.int16) for im in
                 generate(pipe, prompts, seeds, steps=25, guidance=6.0, batch_size=bs, device=args.device)]
            for bs in sizes}
    reference = runs[sizes[0]]
    diffs = {str(bs): int(max(np.abs(a - b).max() for a, b in zip(reference, runs[bs]))) for bs in sizes[1:]}
    report = {"benchmark": "batch_invariance", "model": model_label(default_model()), "device": args.device,
              "torch_version": torch.__version__, "machine": machine(),
              "images": args.images, "reference_batch_size": sizes[0],
              "max_abs_8bit_difference": diffs}
    out = write_result(report, args.out)
    print(f"largest 8-bit difference to batch size {sizes[0]}: {diffs}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
