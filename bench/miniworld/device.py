"""Moving training batches to the training device without stalling a GPU, and naming it.

A plain ``.to("cuda")`` from pageable memory makes the host wait until the GPU has finished the
previous step, so drawing the next batch on the CPU cannot overlap with it. Pinned memory and a
non-blocking copy let it; on the CPU this is a plain ``.to``.
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device) -> torch.Tensor:
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def device_name(device: torch.device) -> str:
    """What the metrics record as the training machine's accelerator ("cpu" without one)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
