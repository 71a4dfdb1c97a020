"""Run one mini-world training stage and record its outputs' checksums.

Stages in order (each depends on the ones before):
clip -> clip-image -> vae -> decoder -> unet -> detector -> probe -> judge -> sae.
Each writes its weights and a metrics.json under datasets/miniworld/v1/<stage>/ (or --out),
keeps resumable checkpoints under checkpoints/ (git-ignored), and adds its files to SHA256SUMS.

    eraselab miniworld train clip --resume
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path

import torch

from bench.core.errors import EraselabError
from bench.core.paths import MINIWORLD_DIR
from bench.miniworld.weights import record_checksums

STAGE_MODULES = {"clip": "bench.miniworld.train_clip", "clip-image": "bench.miniworld.train_clip_image",
                 "vae": "bench.miniworld.train_vae", "decoder": "bench.miniworld.train_decoder",
                 "unet": "bench.miniworld.train_unet", "detector": "bench.miniworld.train_detector",
                 "probe": "bench.miniworld.train_probe", "judge": "bench.miniworld.train_judge",
                 "sae": "bench.miniworld.train_sae"}
# Where each stage writes (the first folder is its out_dir); the fine-tuning stages (clip-image,
# decoder) rewrite the folder they refine, and the decoder also replaces the pipeline's vae/.
STAGE_OUTPUT = {"clip": ("clip",), "clip-image": ("clip",), "vae": ("vae",),
                "decoder": ("vae", "pipeline/vae"), "unet": ("pipeline",),
                "detector": ("detector",), "probe": ("probe",), "judge": ("judge",), "sae": ("sae",)}


def run_stage(stage: str, resume: bool = False, steps: int | None = None, out: Path | None = None,
              progress: bool = True, **options) -> dict:
    """Train one stage. ``options`` are stage-specific (init_from, focus, device, size, batch, lr,
    time_budget: see the stage's train()); None means not given. A stage refuses options its
    train() does not take before anything runs."""
    root = Path(out) if out is not None else MINIWORLD_DIR
    # Training runs on every core it is given; ERASELAB_THREADS lets two stages share a machine.
    torch.set_num_threads(int(os.environ.get("ERASELAB_THREADS", torch.get_num_threads())))
    module = importlib.import_module(STAGE_MODULES[stage])
    kwargs = {"resume": resume, "progress": progress}
    if steps is not None:
        kwargs["steps"] = steps
    for option, value in options.items():
        if value is None:
            continue
        _check_stage_takes(stage, module, option)
        kwargs[option] = _option_value(stage, option, value)
    outputs = [root / folder for folder in STAGE_OUTPUT[stage]]
    metrics = module.train(out_dir=outputs[0], ckpt_dir=root / "checkpoints", root=root, **kwargs)
    files = sorted(p.relative_to(root).as_posix() for folder in outputs if folder.is_dir()
                   for p in folder.rglob("*") if p.is_file())
    record_checksums(files, root)
    return {k: v for k, v in metrics.items() if k != "history"}


def _option_value(stage: str, option: str, value):
    """The value a stage's train() takes for a command-line option (files read and checked here)."""
    if option == "focus":
        from bench.miniworld.train_unet import read_focus
        return read_focus(Path(value))
    if option == "device":
        return check_training_device(stage, value)
    if option == "init_from":
        return Path(value)
    return value


def _check_stage_takes(stage: str, module, option: str) -> None:
    """A stage takes the options its train() has: refuse the others before anything runs."""
    if option in inspect.signature(module.train).parameters:
        return
    takers = [name for name, path in STAGE_MODULES.items()
              if option in inspect.signature(importlib.import_module(path).train).parameters]
    flag = "--" + option.replace("_", "-")
    raise EraselabError(f"{flag} applies to the {', '.join(takers)} stage only, not to {stage!r}")


def check_training_device(stage: str, device: str) -> str:
    """A torch device the stage can train on (the stages that take --device, see
    _check_stage_takes: the UNet, which dominates training time, and the image tower)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise EraselabError(f"--device {device!r}: not a torch device (expected cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EraselabError(f"--device {device}: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise EraselabError(f"--device {device}: the {stage} stage trains on cpu or cuda only")
    return str(dev)
