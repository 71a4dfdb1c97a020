"""Run one mini-world training stage and record its outputs' checksums.

Stages in order (each depends on the ones before):
clip -> clip-image -> vae -> decoder -> unet -> detector -> probe.
Each writes its weights and a metrics.json under datasets/miniworld/v1/<stage>/ (or --out),
keeps resumable checkpoints under checkpoints/ (git-ignored), and adds its files to SHA256SUMS.

    eraselab miniworld train clip --resume
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch

from bench.errors import EraselabError
from bench.paths import MINIWORLD_DIR
from bench.miniworld.weights import record_checksums

STAGE_MODULES = {"clip": "bench.miniworld.train_clip", "clip-image": "bench.miniworld.train_clip_image",
                 "vae": "bench.miniworld.train_vae", "decoder": "bench.miniworld.train_decoder",
                 "unet": "bench.miniworld.train_unet", "detector": "bench.miniworld.train_detector",
                 "probe": "bench.miniworld.train_probe"}
# Where each stage writes; the fine-tuning stages (clip-image, decoder) rewrite the folder they refine.
STAGE_OUTPUT = {"clip": "clip", "clip-image": "clip", "vae": "vae", "decoder": "vae", "unet": "pipeline",
                "detector": "detector", "probe": "probe"}


def run_stage(stage: str, resume: bool = False, steps: int | None = None, out: Path | None = None,
              progress: bool = True, init_from: Path | None = None) -> dict:
    root = Path(out) if out is not None else MINIWORLD_DIR
    # Training runs on every core it is given; ERASELAB_THREADS lets two stages share a machine.
    torch.set_num_threads(int(os.environ.get("ERASELAB_THREADS", torch.get_num_threads())))
    module = importlib.import_module(STAGE_MODULES[stage])
    kwargs = {"resume": resume, "progress": progress}
    if steps is not None:
        kwargs["steps"] = steps
    if init_from is not None:
        if stage != "unet":
            raise EraselabError(f"--init-from applies to the unet stage only, not to {stage!r}")
        kwargs["init_from"] = Path(init_from)
    out_dir = root / STAGE_OUTPUT[stage]
    metrics = module.train(out_dir=out_dir, ckpt_dir=root / "checkpoints", root=root, **kwargs)
    files = sorted(p.relative_to(root).as_posix() for p in out_dir.rglob("*") if p.is_file())
    record_checksums(files, root)
    return {k: v for k, v in metrics.items() if k != "history"}
