"""Learning-rate schedules: linear warm-up, then cosine (GPT-1 pre-training) or linear (fine-tuning) decay.

A run's length is `max_steps`, a time budget, or both. `Budget` maps the time used onto the step
schedule: when a share x of the time has gone, the schedule stands at x * max_steps (or further,
if the steps are ahead), so warm-up and decay take the same shares of the budget on a fast, slow or
busy machine and a time-budgeted run ends on time with its rate decayed. A step-budgeted run's
position is its step count: exactly reproducible; a time-budgeted run's depends on the machine's speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def learning_rate(step: float, *, peak: float, warmup: int, total: int, schedule: str, floor: float = 0.0) -> float:
    """The rate for optimizer step `step` (0-based; a fraction where the time budget sets it) of `total`."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    raise ValueError(f"unknown schedule {schedule!r}")


@dataclass
class Budget:
    """Where a run stands in its schedule, counting steps and, with `seconds` > 0, the time used.

    The time is read only when the ranks agree on it (`sync`, at each logged step); between syncs
    it is projected from the seconds per step measured so far, so every rank computes the same
    rate at every step. `used` carries over a resume through the checkpoint's state.
    """

    max_steps: int
    seconds: float = 0.0  # the time budget; 0: none
    used: float = 0.0  # budget seconds used up to `synced_step`, earlier sessions included
    synced_step: int = 0
    seconds_per_step: float = 0.0

    def position(self, step: int) -> float:
        """The step of the schedule the run stands at: `step`, or further where the time says so."""
        if self.seconds <= 0:
            return float(step)
        projected = self.used + (step - self.synced_step) * self.seconds_per_step
        return max(float(step), min(1.0, projected / self.seconds) * self.max_steps)

    def done(self, step: int) -> bool:
        return self.position(step) >= self.max_steps

    def sync(self, step: int, used: float, seconds_per_step: float) -> None:
        """Record the agreed time used after `step` steps and the current seconds per step."""
        self.synced_step, self.used, self.seconds_per_step = step, used, seconds_per_step
