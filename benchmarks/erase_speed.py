"""Erasure speed: seconds per concept for each method (median of 3 seeded runs), and the ratio
esd-x / fewshot-te that the seed paper reports as 60-900x on Stable Diffusion.

    python -m benchmarks.erase_speed [--concepts snoopy] [--methods fewshot-te,esd-x] [--repeats 3]
    python -m benchmarks.erase_speed --concepts "snoopy,church,van gogh" --methods all   # the mini-methods table

Runs on the shipped mini-world pipeline when it is installed, else on the tiny test pipeline
(bench/tiny.py; the result then says so: tiny-model timings only show overheads and relative cost).
Each method uses its family defaults (methods/defaults.py), so the comparison is each method at its
own recipe, the way the seed paper compares them. Seconds are erase()'s own clock (image loading,
encoding and training; not model loading); the size is the saved edit folder's (delta and
record). Writes benchmarks/results/erase_speed.json. Not a test.
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.results_io import RESULTS_DIR, machine, model_label, write_result

DEFAULT_METHODS = "fewshot-te,esd-x"


def saved_size(result) -> int:
    """Bytes of the edit folder ``eraselab erase --out`` writes (delta.safetensors + edit.json)."""
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        folder = result.save(Path(tmp) / "edit")
        return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concepts", default="snoopy", help="comma-separated catalog concepts")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help="comma-separated method names, or 'all' for every registered method")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=str(RESULTS_DIR / "erase_speed.json"))
    args = parser.parse_args(argv)

    import torch

    from bench.core.errors import EraselabError
    from methods.delta import reset_edits
    from methods.erase import erase

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        from bench.pipeline_io import default_model, load_pipeline
        model_dir = default_model()
        pipe = load_pipeline(model_dir, device=device, progress=False)
        model, note = model_label(model_dir), "shipped mini-world pipeline"
    except EraselabError as exc:
        from bench.tiny import tiny_pipeline
        pipe = tiny_pipeline().to(device)
        model = "bench.tiny.tiny_pipeline(seed=0)"
        note = (f"mini world not available ({exc}); timed on the tiny test pipeline, which only "
                f"shows overheads and relative cost")
    from methods import METHODS
    names = METHODS.names() if args.methods == "all" else args.methods.split(",")
    concepts = [c.strip() for c in args.concepts.split(",")]
    results: dict = {}
    for concept in concepts:
        for method in names:
            runs = []
            for seed in range(args.repeats):
                result = erase(pipe, method, concept, seed=seed, progress=False)
                runs.append({"seed": seed, "seconds": result.seconds,
                             "params_changed": result.params_changed,
                             "delta_bytes": saved_size(result),
                             "peak_memory_mb": result.record["peak_memory_mb"]})
                config = result.record["config"]
                pipe = reset_edits(result.pipeline)
            entry = {"median_seconds": statistics.median(r["seconds"] for r in runs),
                     "params_changed": runs[0]["params_changed"], "delta_bytes": runs[0]["delta_bytes"],
                     "config": config, "runs": runs}
            results.setdefault(concept, {})[method] = entry
            print(f"{concept:14s} {method:16s} median {entry['median_seconds']:8.2f} s over "
                  f"{args.repeats} runs, {entry['params_changed']:,} parameters changed, "
                  f"{entry['delta_bytes'] / 1e6:.2f} MB on disk")
    ratios = {c: round(r["esd-x"]["median_seconds"] / r["fewshot-te"]["median_seconds"], 2)
              for c, r in results.items()
              if "esd-x" in r and "fewshot-te" in r and r["fewshot-te"]["median_seconds"] > 0}
    report = {"benchmark": "erase_speed", "model": model, "note": note, "device": device,
              "torch_threads": torch.get_num_threads(), "concepts": concepts,
              "repeats": args.repeats, "machine": machine(),
              "esd_x_over_fewshot_te": ratios, "methods": results}
    out = write_result(report, args.out)
    for concept, ratio in ratios.items():
        print(f"{concept}: esd-x / fewshot-te = {ratio}x")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
