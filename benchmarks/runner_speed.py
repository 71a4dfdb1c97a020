"""Runner speed: the main job's wall time, and generation against a bare loop, the loop peers run
and this machine's arithmetic limit, all measured in one run.

    python -m benchmarks.runner_speed                     # ~15 min on 2 cores; benchmarks/results/runner_speed.json
    python -m benchmarks.runner_speed --only generation   # ~3 min: sections 2 and 3 (one run)

Measures (not a test):
1. the README's main job from an empty run folder: ``eraselab run mini-default`` then
   ``eraselab report``, its stages and images per second, then the same two as a no-op rerun;
2. on the original model's first batches of that suite, alternating per batch so that load from
   other processes hits each alike: the runner's generation path (``generate()`` + PNG writes,
   inside ``bench.samplers.sampling`` with the suite's solver and precision), a bare batched
   diffusers loop with the same settings, and the one-prompt-per-call loop of peers' inference
   scripts (EraseEval, UnlearnCanvas) both as peers run it (fp32) and at the suite's precision;
3. the limit: the UNet's GFLOP per evaluation (``FlopCounterMode``), the GEMM peak at this thread
   count in fp32 and bf16, and the GFLOP/s the bare loop achieves.
Needs the shipped mini world (datasets/miniworld/v1); without it the script says so and measures
on the tiny pipeline (``--smoke``), whose numbers only check the overhead. Each section records
when it was measured; ``--only`` re-measures one and keeps the other from the record.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_io import REPO_ROOT as ROOT, RESULTS_DIR, machine, write_result

OUT = RESULTS_DIR / "runner_speed.json"
COMPARE_BATCHES = 4      # of the original model's batches: 160 images at mini-default's batch 40
PER_PROMPT_IMAGES = 16


def have_mini_world() -> bool:
    try:
        from bench.pipeline_io import default_model
        default_model()
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "not installed"
        print(f"mini world not available ({exc}); measuring on the tiny pipeline (--smoke)")
        return False


def main_job(smoke: bool) -> dict:
    """The CLI from an empty folder, then its no-op rerun."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "bench.cli", "run", "mini-default", "--out", f"{tmp}/run",
               "--no-progress"] + (["--smoke"] if smoke else [])
        report = [sys.executable, "-m", "bench.cli", "report", f"{tmp}/run"]
        for key in ("fresh", "noop_rerun"):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
            out[f"{key}_run_s"] = round(time.perf_counter() - t0, 2)
            subprocess.run(report, check=True, capture_output=True, cwd=ROOT)
            out[f"{key}_wall_s"] = round(time.perf_counter() - t0, 2)  # run + report: the main job
            if key == "fresh":
                timing = json.loads(next((Path(tmp) / "run" / "timings").glob("*.json")).read_text())
                manifest = json.loads((Path(tmp) / "run" / "manifest.json").read_text())
                out["stages_s"] = timing["stages"]
                out["images"] = manifest["counts"]["images"]
                out["edits"] = manifest["counts"]["edits"]
                out["sampler"] = manifest["effective"]["sampler"]
                out["report_written"] = (Path(tmp) / "run" / "report" / "index.html").is_file()
        out["images_per_s_of_wall"] = round(out["images"] / out["fresh_wall_s"], 3)
    return out


def generation(smoke: bool) -> dict:
    """Runner path vs bare batched loop vs per-prompt loops, and the arithmetic limit."""
    import torch

    from bench.core import files
    from bench.generate import generate
    from bench.runner import models
    from bench.runner.run import prepare
    from bench.samplers import sampling
    from bench.suite import load_suite
    from benchmarks import generation_limit as lim

    suite, paths, plan, _, _ = prepare(load_suite("mini-default"), smoke=smoke)
    s = suite.sampler
    batches = sorted((b for b in plan.batches if plan.edits[b.edit_id].is_base),
                     key=lambda b: b.id)[:COMPARE_BATCHES]
    pipe = models.load(paths[suite.models[0].id], "cpu")
    size = s["resolution"] or pipe.unet.config.sample_size * pipe.vae_scale_factor

    def bare(b):
        gens = [torch.Generator("cpu").manual_seed(im.seed) for im in b.images]
        with torch.no_grad():
            pipe([im.prompt for im in b.images], num_inference_steps=s["steps"],
                 guidance_scale=s["guidance"], height=size, width=size, generator=gens,
                 output_type="pil")

    def runner_path(b, folder):  # what run._do_batch does: generate() + atomic PNG writes
        images = generate(pipe, [im.prompt for im in b.images], [im.seed for im in b.images],
                          steps=s["steps"], guidance=s["guidance"], batch_size=len(b.images),
                          resolution=s["resolution"])
        for im, image in zip(b.images, images):
            files.write_png(Path(folder) / f"{im.id}.png", image)

    first = [im for b in batches for im in b.images][:PER_PROMPT_IMAGES]
    loop_args = ([im.prompt for im in first], [im.seed for im in first], s["steps"], s["guidance"], size)
    t_bare = t_runner = 0.0
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        with sampling(pipe, s):
            bare(batches[0])  # warm-up, untimed: the first call pays for allocation and caches
            runner_path(batches[0], tmp)
            for b in batches:
                t0 = time.perf_counter()
                bare(b)
                t_bare += time.perf_counter() - t0
                t0 = time.perf_counter()
                runner_path(b, tmp)
                t_runner += time.perf_counter() - t0
                n += len(b.images)
            t_loop_same = lim.per_prompt_seconds(pipe, *loop_args)
            gflop = lim.unet_gflop_per_eval(pipe)
        with sampling(pipe, {**s, "precision": "fp32"}):
            t_loop_fp32 = lim.per_prompt_seconds(pipe, *loop_args)
    peak32, peak16 = lim.gemm_peak_gflops(), lim.gemm_peak_gflops(dtype=torch.bfloat16)
    evals_per_image = s["steps"] * (2 if s["guidance"] > 1 else 1)  # classifier-free guidance
    achieved = n * evals_per_image * gflop / t_bare
    runner_rate = n / t_runner
    return {
        "images": n, "sampler": s, "threads": torch.get_num_threads(),
        "runner_images_per_s": round(runner_rate, 3), "bare_images_per_s": round(n / t_bare, 3),
        "runner_vs_bare": round(t_bare / t_runner, 4),
        "per_prompt_fp32_images_per_s": round(len(first) / t_loop_fp32, 3),
        "per_prompt_same_precision_images_per_s": round(len(first) / t_loop_same, 3),
        "runner_vs_per_prompt_fp32": round(runner_rate / (len(first) / t_loop_fp32), 2),
        "runner_vs_per_prompt_same_precision": round(runner_rate / (len(first) / t_loop_same), 2),
        "unet_gflop_per_eval": round(gflop, 4), "unet_evals_per_image": evals_per_image,
        "gemm_peak_gflops": {"fp32": round(peak32, 1), "bf16": round(peak16, 1)},
        "bare_unet_gflops": round(achieved, 1),
        "bare_vs_gemm_peak": round(achieved / (peak16 if s["precision"] == "bf16" else peak32), 3),
        "per_prompt_fp32_unet_gflops": round(len(first) * evals_per_image * gflop / t_loop_fp32, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("generation", "main-job"), default=None)
    args = parser.parse_args(argv)
    smoke = not have_mini_world()
    result = json.loads(OUT.read_text()) if args.only and OUT.is_file() else {}
    result.update({"benchmark": "runner_speed", "machine": machine(), "mini_world": not smoke,
                   "device": "cpu", "smoke": smoke})
    for section, measure in (("generation", generation), ("main_job", main_job)):
        if args.only in (None, section.replace("_", "-")):
            result[section] = {"measured_at": datetime.datetime.now().isoformat(timespec="seconds"),
                               **measure(smoke)}
    write_result(result, OUT)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
