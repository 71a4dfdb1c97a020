"""Moving training batches to the training device without stalling a GPU.

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
