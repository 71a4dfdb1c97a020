"""A training run's length from a time budget, for short lent-GPU sessions.

``--time-budget SECONDS`` on a stage: the stage starts with its default step count, times steps
SKIP..PROBE_STEPS (the first ones pay for allocation and warm-up), then fixes the count to what
fits the budget, rounded down to a hundred. Every schedule using it warms up for longer than
PROBE_STEPS, so the learning rates already used do not depend on the length: the run equals one
started with ``--steps`` that count, which the stage records.
"""

from __future__ import annotations

import time

PROBE_STEPS = 40
SKIP = 10


class StepBudget:
    def __init__(self, seconds: float, start: int):
        self.seconds, self.start = seconds, start
        self._probe_start: float | None = None
        self.record: dict | None = None

    def steps_after(self, step: int, steps: int) -> int:
        """Call after each finished ``step`` (1-based count); returns the run's step count."""
        if step == self.start + SKIP:
            self._probe_start = time.time()
        elif step == self.start + PROBE_STEPS:
            per_step = (time.time() - self._probe_start) / (PROBE_STEPS - SKIP)
            steps = max(step, int(self.seconds / per_step) // 100 * 100)
            self.record = {"seconds_per_step": round(per_step, 4), "time_budget": self.seconds, "steps": steps}
        return steps
