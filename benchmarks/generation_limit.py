"""How close generation runs to this machine's arithmetic limit, and the loops peers run.

    python -m benchmarks.generation_limit     # about 2 minutes; benchmarks/results/generation_limit.json

The measurements ``benchmarks/runner_speed.py`` records beside its runner-vs-bare ratio, all in
one process so that their ratios are comparable on a shared machine:
- ``unet_gflop_per_eval``: the UNet's floating-point operations for one image-evaluation (one
  latent through one UNet call), counted by ``torch.utils.flop_counter.FlopCounterMode``;
- ``gemm_peak_gflops``: fp32 matrix-multiply throughput at the same thread count, the practical
  ceiling of the UNet's arithmetic;
- ``per_prompt_loop``: images per second of the loop peers' inference scripts run (one
  ``pipe(prompt)`` call per image, one generator each), against the batched loop.
"""

from __future__ import annotations

import json
import time


def unet_gflop_per_eval(pipe, batch: int = 1) -> float:
    """GFLOP of one UNet evaluation of one latent (counted at ``batch`` latents, divided)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet = pipe.unet
    size = unet.config.sample_size
    latents = torch.zeros(batch, unet.config.in_channels, size, size)
    hidden = torch.zeros(batch, pipe.tokenizer.model_max_length, pipe.text_encoder.config.hidden_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(latents, torch.tensor([500] * batch), encoder_hidden_states=hidden)
    return counter.get_total_flops() / batch / 1e9


def gemm_peak_gflops(n: int = 1024, repeats: int = 20, dtype=None) -> float:
    """GEMM GFLOP/s in ``dtype`` (default fp32): the best of ``repeats`` n x n x n products after
    a warm-up."""
    import torch

    dtype = dtype or torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def per_prompt_seconds(pipe, prompts, seeds, steps: int, guidance: float, size: int) -> float:
    """Seconds for the peers' loop: one prompt, one image, one call each."""
    import torch

    t0 = time.perf_counter()
    with torch.no_grad():
        for prompt, seed in zip(prompts, seeds):
            pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                 generator=torch.Generator("cpu").manual_seed(int(seed)), output_type="pil")
    return time.perf_counter() - t0


def batched_seconds(pipe, prompts, seeds, steps: int, guidance: float, size: int, batch: int) -> float:
    """Seconds for a bare batched diffusers loop over the same prompts and seeds."""
    import torch

    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(prompts), batch):
            chunk = slice(start, start + batch)
            pipe(list(prompts[chunk]), num_inference_steps=steps, guidance_scale=guidance, height=size,
                 width=size, generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds[chunk]],
                 output_type="pil")
    return time.perf_counter() - t0


def main() -> int:
    import torch
    from bench.pipeline_io import default_model, load_pipeline

    pipe = load_pipeline(default_model(), progress=False)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    prompts = [f"a photo of a {c}" for c in ("church", "tench", "parachute", "golf ball")] * 4
    seeds = list(range(len(prompts)))
    steps, guidance = 10, 6.0
    gflop = unet_gflop_per_eval(pipe)
    peak = gemm_peak_gflops()
    loop = per_prompt_seconds(pipe, prompts, seeds, steps, guidance, size)
    batched = batched_seconds(pipe, prompts, seeds, steps, guidance, size, batch=len(prompts))
    evals = len(prompts) * steps * 2  # classifier-free guidance: two UNet evaluations per step
    from benchmarks.results_io import RESULTS_DIR, machine, write_result
    report = {"benchmark": "generation_limit", "machine": machine(), "threads": torch.get_num_threads(),
              "images": len(prompts), "steps": steps, "guidance": guidance, "batch": len(prompts),
              "unet_gflop_per_eval": round(gflop, 3), "gemm_peak_gflops": round(peak, 1),
              "batched_unet_gflops": round(evals * gflop / batched, 1),
              "batched_vs_gemm_peak": round(evals * gflop / batched / peak, 3),
              "per_prompt_images_per_s": round(len(prompts) / loop, 3),
              "batched_images_per_s": round(len(prompts) / batched, 3),
              "batched_vs_per_prompt": round(loop / batched, 2)}
    write_result(report, RESULTS_DIR / "generation_limit.json")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
