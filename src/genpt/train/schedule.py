"""Learning-rate schedules: linear warm-up, then cosine (GPT-1 pre-training) or linear (fine-tuning) decay."""

import math


def learning_rate(step: int, *, peak: float, warmup: int, total: int, schedule: str, floor: float = 0.0) -> float:
    """The rate for optimizer step `step` (0-based) of `total`."""
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
