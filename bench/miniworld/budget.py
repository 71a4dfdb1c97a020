"""A training run's length from a time budget, for short lent-GPU sessions.

``--time-budget SECONDS`` on a stage: the stage starts with its default step count, times steps
SKIP..PROBE_STEPS (the first ones pay for allocation and warm-up), then fixes the count to what
fits the budget, rounded down to a hundred. Every stage using it warms up (schedule.py) for
longer than PROBE_STEPS, so the learning rates already used do not depend on the length: the run
equals one started with ``--steps`` that count, which the stage records.
"""

from __future__ import annotations

import time

PROBE_STEPS = 40
SKIP = 10


def refuse_with_resume(time_budget: float | None, resume: bool) -> None:
    """A budget fixes the length of a new run; a resumed run's length was fixed by its first start."""
    if time_budget is not None and resume:
        from bench.core.errors import EraselabError
        raise EraselabError("--time-budget fixes the length of a new run; it cannot be combined with --resume")


class StepBudget:
    """``steps_after`` keeps ``steps`` as it is when ``seconds`` is None (no budget given)."""

    def __init__(self, seconds: float | None, start: int):
        self.seconds, self.start = seconds, start
        self._probe_start: float | None = None
        self.record: dict | None = None

    def steps_after(self, step: int, steps: int) -> int:
        """Call after each finished ``step`` (1-based count); returns the run's step count."""
        if self.seconds is None:
            return steps
        if step == self.start + SKIP:
            self._probe_start = time.time()
        elif step == self.start + PROBE_STEPS:
            per_step = (time.time() - self._probe_start) / (PROBE_STEPS - SKIP)
            steps = max(step, int(self.seconds / per_step) // 100 * 100)
            self.record = {"seconds_per_step": round(per_step, 4), "time_budget": self.seconds, "steps": steps}
        return steps
