"""Runner speed: generation throughput vs a bare diffusers loop, UNet share, suite wall times.

    python -m benchmarks.runner_speed          # writes benchmarks/results/runner_speed.json

Measures (not a test):
1. generation throughput of the runner (images per second of its generate stage: sampling plus
   PNG writes) against a bare diffusers loop over the same prompts, seeds, steps, guidance and
   batches; the goal is >= 95%;
2. the share of the runner's wall time spent inside the UNet (forward calls, timed), the UNet's
   GFLOP per evaluation, the bare loop's achieved GFLOP/s against this machine's fp32 GEMM peak,
   and the runner against the one-prompt-per-call loop of peers' scripts
   (benchmarks/generation_limit.py);
3. wall time of ``eraselab run mini-default`` from an empty run folder, and of its no-op rerun.
All of these need the shipped mini world (datasets/miniworld/v1); while it is missing the script
says so and measures on the tiny pipeline (``--smoke``), whose numbers only check the overhead.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_io import REPO_ROOT as ROOT, RESULTS_DIR

OUT = RESULTS_DIR / "runner_speed.json"


def have_mini_world() -> bool:
    try:
        from bench.pipeline_io import default_model
        default_model()
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "not installed"
        print(f"mini world not available ({exc}); measuring on the tiny pipeline (--smoke)")
        return False


def unet_timer():
    """Patch UNet2DConditionModel.forward to accumulate its wall time."""
    from diffusers import UNet2DConditionModel
    total = {"s": 0.0, "calls": 0}
    real = UNet2DConditionModel.forward

    def timed(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return real(self, *a, **k)
        finally:
            total["s"] += time.perf_counter() - t0
            total["calls"] += 1
    UNet2DConditionModel.forward = timed
    return total, lambda: setattr(UNet2DConditionModel, "forward", real)


def main() -> int:
    import torch
    from bench.runner import models
    from bench.runner.run import prepare, run_suite
    from bench.suite import load_suite

    smoke = not have_mini_world()
    suite = load_suite("mini-default")
    result = {"mini_world": not smoke, "device": "cpu", "torch_threads": torch.get_num_threads()}

    # 1 + 2: one fresh run in-process, UNet timed
    with tempfile.TemporaryDirectory() as tmp:
        total, restore = unet_timer()
        t0 = time.perf_counter()
        run_suite(suite, Path(tmp) / "run", smoke=smoke, progress=False)
        wall = time.perf_counter() - t0
        restore()
        timings = [json.loads(p.read_text()) for p in (Path(tmp) / "run" / "timings").glob("*.json")]
        stages = timings[0]["stages"]
        counts = timings[0]["counts"]
        result["runner_fresh_wall_s"] = round(wall, 2)
        result["unet_share_of_wall"] = round(total["s"] / wall, 4)
        result["unet_calls"] = total["calls"]
        gen_s = stages.get("generate", 0.0) + stages.get("write_images", 0.0)
        result["run_generate_stage_images_per_s"] = round(counts["generated"] / gen_s, 3) if gen_s else None
        result["stages_s"] = stages

        # the bare loop: the same prompts, seeds, settings and batches (the original model's)
        suite_e, paths, plan, _, _ = prepare(suite, smoke=smoke)
        s = suite_e.sampler
        original = sorted((b for b in plan.batches if plan.edits[b.edit_id].method == "original"),
                          key=lambda b: b.id)
        pipe = models.load(paths[suite_e.models[0].id], s, "cpu")
        size = s["resolution"] or pipe.unet.config.sample_size * pipe.vae_scale_factor
        from bench.generate import generate
        from bench.core import files

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

        # alternate the two per batch so that load from other processes hits both alike
        t_bare = t_runner = 0.0
        n = 0
        for b in original:
            t0 = time.perf_counter()
            bare(b)
            t_bare += time.perf_counter() - t0
            t0 = time.perf_counter()
            runner_path(b, tmp)
            t_runner += time.perf_counter() - t0
            n += len(b.images)
        result["bare_images_per_s"] = round(n / t_bare, 3)
        result["runner_generate_images_per_s"] = round(n / t_runner, 3)
        result["runner_vs_bare"] = round(t_bare / t_runner, 4)
        result["throughput_note"] = ("same batches (the original model's), alternating bare "
                                     "pipe() and the runner's generate() + PNG writes")

        # the machine's limit and the peers' per-prompt loop, in the same process
        from benchmarks import generation_limit as lim
        gflop = lim.unet_gflop_per_eval(pipe)
        peak = lim.gemm_peak_gflops()
        evals_per_image = s["steps"] * (2 if s["guidance"] > 1 else 1)  # classifier-free guidance
        achieved = n * evals_per_image * gflop / t_bare
        first = [im for b in original for im in b.images][:16]
        t_loop = lim.per_prompt_seconds(pipe, [im.prompt for im in first], [im.seed for im in first],
                                        s["steps"], s["guidance"], size)
        result.update({
            "unet_gflop_per_eval": round(gflop, 4), "unet_evals_per_image": evals_per_image,
            "gemm_peak_gflops": round(peak, 1), "bare_unet_gflops": round(achieved, 1),
            "bare_vs_gemm_peak": round(achieved / peak, 3),
            "per_prompt_images_per_s": round(len(first) / t_loop, 3),
            "runner_vs_per_prompt": round((n / t_runner) / (len(first) / t_loop), 2)})

    # 3: the CLI from an empty folder, then the no-op rerun
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "bench.cli", "run", "mini-default", "--out", f"{tmp}/run",
               "--no-progress"] + (["--smoke"] if smoke else [])
        for key in ("mini_default_fresh_wall_s", "mini_default_noop_rerun_wall_s"):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
            result[key] = round(time.perf_counter() - t0, 2)
    result["smoke"] = smoke
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
