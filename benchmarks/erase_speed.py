"""Erasure speed: fewshot-te vs esd-x, seconds per concept (median of 3 seeded runs).

    python benchmarks/erase_speed.py [--concept snoopy] [--repeats 3] [--threads N]

Runs on the shipped mini-world pipeline when it is installed, else on the tiny test pipeline
(bench/tiny.py; the result then says so: tiny-model timings only show overheads and relative cost).
Each method uses its family defaults (methods/defaults.py), so the comparison is each method at its
own recipe, the way the seed paper compares them. Seconds are erase()'s own clock (image loading,
encoding and training; not model loading). Writes benchmarks/results/erase_speed.json. Not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS_TO_TIME = ("fewshot-te", "esd-x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concept", default="snoopy")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "erase_speed.json"))
    args = parser.parse_args(argv)

    import torch

    from bench.errors import EraselabError
    from methods.base import erase, reset_edits

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        from bench.pipeline_io import default_model, load_pipeline
        model_dir = default_model()
        pipe = load_pipeline(model_dir, device=device, progress=False)
        model, note = str(model_dir), "shipped mini-world pipeline"
    except EraselabError as exc:
        from bench.tiny import tiny_pipeline
        pipe = tiny_pipeline().to(device)
        model = "bench.tiny.tiny_pipeline(seed=0)"
        note = (f"mini world not available ({exc}); timed on the tiny test pipeline, which only "
                f"shows overheads and relative cost")
    results = {}
    for method in METHODS_TO_TIME:
        runs = []
        for seed in range(args.repeats):
            result = erase(pipe, method, args.concept, seed=seed, progress=False)
            runs.append({"seed": seed, "seconds": result.seconds,
                         "params_changed": result.params_changed,
                         "peak_memory_mb": result.record["peak_memory_mb"]})
            config = result.record["config"]
            pipe = reset_edits(result.pipeline)
        results[method] = {"median_seconds": statistics.median(r["seconds"] for r in runs),
                           "config": config, "runs": runs}
        print(f"{method:12s} median {results[method]['median_seconds']:.2f} s over {args.repeats} runs")
    fs, esd = results["fewshot-te"]["median_seconds"], results["esd-x"]["median_seconds"]
    report = {"benchmark": "erase_speed", "model": model, "note": note, "device": device,
              "torch_threads": torch.get_num_threads(), "concept": args.concept,
              "repeats": args.repeats, "machine": platform.processor() or platform.machine(),
              "esd_x_over_fewshot_te": round(esd / fs, 2) if fs > 0 else None,
              "methods": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"esd-x / fewshot-te = {report['esd_x_over_fewshot_te']}x; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
