"""The learning-rate schedule of the mini-world training stages: linear warm-up, then cosine decay
from the peak to ``floor`` x peak over the rest of the run.

The warm-up depends on the step alone, never on the run's length: this is what lets
``--time-budget`` (budget.py) fix the length after the first steps without changing a rate
already used.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, steps: int, peak: float, warmup: int = 0, floor: float = 0.0) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    # Two spellings of one formula, each in the floating-point order its stages were trained with,
    # so every stage's rates stay bit-identical (decay to 0: clip-image, decoder, vae; to a floor:
    # clip, unet).
    if floor == 0.0:
        return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
