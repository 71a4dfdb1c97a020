"""The samplers a suite may name (``sampler.scheduler``) and swapping one into a pipeline.

    from bench.samplers import set_scheduler
    set_scheduler(pipe, "dpm")      # DPM-Solver++ (multistep), built from the pipeline's own config

"default" keeps the scheduler the model ships with. The names are a suite's vocabulary, so
validating a suite reads them without importing diffusers.

``sampler.precision`` is the UNet's arithmetic while images are generated: ``fp32``, ``bf16``
(autocast around the UNet only: the text encoder, the VAE and the solver stay fp32), or ``auto``:
bf16 where the hardware multiplies bf16 natively (a CPU with avx512_bf16 or amx_bf16, a CUDA
device that supports it), fp32 elsewhere: emulated bf16 runs many times slower than fp32 (20x on
an AVX2-only CPU), native bf16 1.4-1.6x faster for the mini UNet (CHANGELOG.md, issue 18). The
runner resolves ``auto`` before planning, so the precision an image was made at is part of its
address and of the run's manifest. Training inside an erasure method always runs in fp32.

    with sampling(pipe, {"scheduler": "dpm", "precision": resolve_precision("auto", "cpu")}):
        images = generate(pipe, prompts, seeds)

Erasure methods train against the scheduler the model ships with; ``sampling`` swaps the suite's
solver in only while images are generated, so an edit never depends on how it is later sampled.
"""

from __future__ import annotations

from contextlib import contextmanager

SCHEDULER_CLASSES = {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler",
                     "dpm": "DPMSolverMultistepScheduler", "unipc": "UniPCMultistepScheduler",
                     "euler": "EulerDiscreteScheduler", "euler-a": "EulerAncestralDiscreteScheduler",
                     "lms": "LMSDiscreteScheduler"}


def set_scheduler(pipe, name: str) -> None:
    """Replace the pipeline's scheduler by ``name`` (SCHEDULER_CLASSES), built from its config."""
    if name == "default":
        return
    import diffusers

    cls = getattr(diffusers, SCHEDULER_CLASSES[name])
    kwargs = {"skip_prk_steps": True} if name == "pndm" else {}  # as SD 1.x ships PNDM
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **kwargs)


PRECISIONS = ("fp32", "bf16", "auto")
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU (Linux /proc/cpuinfo flags) multiplies bf16 in hardware."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    return any(f in flags for f in _BF16_CPU_FLAGS)


def resolve_precision(name: str, device: str = "cpu") -> str:
    """``fp32`` or ``bf16`` for a suite's ``sampler.precision`` on ``device``."""
    if name == "bf16" and not str(device).startswith("cuda") and not cpu_has_native_bf16():
        import logging
        logging.getLogger("eraselab").warning(
            "sampler.precision bf16 on a CPU without avx512_bf16 or amx_bf16: emulated bf16 runs "
            "many times slower than fp32 (precision: auto picks fp32 here)")
    if name != "auto":
        return name
    if str(device).startswith("cuda"):
        import torch
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


@contextmanager
def unet_precision(pipe, precision: str):
    """Inside the block the pipeline's UNet runs under bf16 autocast (``precision == "bf16"``) and
    hands fp32 predictions back to the solver; with ``fp32`` nothing changes."""
    if precision == "fp32":
        yield pipe
        return
    if precision != "bf16":
        raise ValueError(f"precision must be fp32 or bf16 once resolved, got {precision!r}")
    import torch

    unet = pipe.unet
    forward = unet.forward
    device_type = unet.device.type

    def autocast_forward(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = forward(*args, **kwargs)
        if isinstance(out, tuple):
            return (out[0].float(), *out[1:])
        out.sample = out.sample.float()
        return out

    unet.forward = autocast_forward  # an instance attribute: nn.Module.__call__ finds it first
    try:
        yield pipe
    finally:
        del unet.forward


@contextmanager
def sampling(pipe, sampler: dict):
    """Inside the block the pipeline samples with ``sampler``'s scheduler and (resolved) precision;
    the scheduler it had comes back afterwards."""
    shipped = pipe.scheduler
    set_scheduler(pipe, sampler.get("scheduler", "default"))
    try:
        with unet_precision(pipe, sampler.get("precision", "fp32")):
            yield pipe
    finally:
        pipe.scheduler = shipped
