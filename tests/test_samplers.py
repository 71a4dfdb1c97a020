"""The suite's solver and precision: hardware detection, bf16 autocast around the UNet only, the
scheduler swapped in for sampling and restored, and what enters an image's address.

    python -m pytest tests/test_samplers.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.samplers import cpu_has_native_bf16, resolve_precision, sampling, unet_precision
from bench.tiny import tiny_pipeline

torch.set_num_threads(1)


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_has_native_bf16("processor: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 sse\n")
    assert cpu_has_native_bf16("flags : fpu amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16("flags : fpu avx2 avx512f avx512_vnni\n")  # emulated: slow
    assert not cpu_has_native_bf16("")


def test_precision_resolves_to_fp32_or_bf16():
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert resolve_precision("auto", "cpu") == expected


def _images(pipe, precision):
    from bench.generate import generate
    with unet_precision(pipe, precision):
        images = generate(pipe, ["a photo of snoopy", "a church"], [0, 1], steps=3, guidance=5.0)
    return np.stack([np.asarray(i) for i in images]).astype(int)


def test_bf16_runs_the_unet_only_and_hands_back_fp32():
    pipe = tiny_pipeline(seed=0)
    unet = pipe.unet
    x = torch.randn(2, 4, 8, 8)
    h = pipe.text_encoder(torch.zeros(2, 77, dtype=torch.long))[0]
    with unet_precision(pipe, "bf16"):
        out = unet(x, 10, encoder_hidden_states=h).sample
        assert out.dtype == torch.float32
        assert pipe.text_encoder(torch.zeros(1, 77, dtype=torch.long))[0].dtype == torch.float32
    assert "forward" not in unet.__dict__  # the module's own forward is back
    full = unet(x, 10, encoder_hidden_states=h).sample
    assert not torch.equal(out, full) and torch.allclose(out, full, atol=0.1)
    fp32, bf16, again = _images(pipe, "fp32"), _images(pipe, "bf16"), _images(pipe, "bf16")
    assert np.array_equal(bf16, again)  # same precision, same bytes
    assert np.abs(fp32 - bf16).mean() < 8  # close to the fp32 images, 0-255 levels
    with pytest.raises(ValueError):
        with unet_precision(pipe, "auto"):  # resolved before use, never here
            pass


def test_sampling_swaps_the_scheduler_in_and_back():
    pipe = tiny_pipeline(seed=0)
    shipped = pipe.scheduler
    with sampling(pipe, {"scheduler": "dpm", "precision": "fp32"}):
        assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler is shipped
    with pytest.raises(RuntimeError):
        with sampling(pipe, {"scheduler": "unipc", "precision": "bf16"}):
            raise RuntimeError("generation failed")
    assert pipe.scheduler is shipped and "forward" not in pipe.unet.__dict__


def test_a_wrapped_inference_time_pipeline_samples_with_the_swapped_scheduler():
    from methods.guidance import GuidedPipeline
    pipe = tiny_pipeline(seed=0)
    guided = GuidedPipeline(pipe, [{"method": "negative-prompt", "concept": "snoopy", "text": "snoopy"}])
    with sampling(guided, {"scheduler": "dpm", "precision": "fp32"}):
        assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"


def test_precision_enters_image_addresses_and_fp32_keeps_the_old_ones():
    import dataclasses

    from bench.core.ids import content_id
    from bench.runner.plan import build_plan
    from bench.suite import load_suite
    suite = load_suite("mini-default")
    fp32 = dataclasses.replace(suite, sampler={**suite.sampler, "precision": "fp32"})
    bf16 = dataclasses.replace(suite, sampler={**suite.sampler, "precision": "bf16"})
    versions = {m.name: "1" for m in suite.methods}
    a = build_plan(fp32, {"miniworld": "f"}, versions)
    b = build_plan(bf16, {"miniworld": "f"}, versions)
    assert a.edits.keys() == b.edits.keys()  # an edit never depends on how it is sampled
    assert not set(a.images) & set(b.images)
    im = next(iter(a.images.values()))
    old_rule = {k: suite.sampler[k] for k in ("scheduler", "steps", "guidance", "resolution")}
    assert im.id == content_id({"edit": im.edit_id, "prompt_id": im.prompt_id, "prompt": im.prompt,
                                "sample": im.sample, "seed": im.seed, "sampler": old_rule})
