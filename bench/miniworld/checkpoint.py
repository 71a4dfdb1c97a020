"""Resumable training state for the mini-world stages.

A checkpoint is the project's own file (never user-supplied): model and optimiser state dicts
plus the step, written atomically with torch.save and read back with ``weights_only=True``.
Shipped weights are safetensors (see each stage); checkpoints live in the git-ignored
``checkpoints/`` folder of the mini-world directory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.core.files import atomic_write


def save_checkpoint(path: Path, step: int, **state_dicts) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"step": step, **{k: v.state_dict() for k, v in state_dicts.items()}}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, **objects) -> int:
    """Restore ``objects`` (name -> module/optimiser) from ``path``; returns the saved step."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    for name, obj in objects.items():
        obj.load_state_dict(payload[name])
    return int(payload["step"])


def start_from_stage(model, path: Path, fallback: str) -> str:
    """Load an earlier stage's final weights (its checkpoint ``path``) into ``model`` when the file
    is here, so a refining stage is a function of that stage alone and re-running it does not
    compound; otherwise leave ``model`` as loaded. Returns what it started from, for the metrics."""
    path = Path(path)
    if not path.is_file():
        return f"{fallback} as found (no {path.name} here; it may have been refined before)"
    step = load_checkpoint(path, model=model)
    return f"{path.name} (step {step})"
