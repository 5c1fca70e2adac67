"""The learning-rate schedule: linear warmup, then a cosine over the step or wall-clock budget."""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float, time_used: float = 0.0) -> float:
    """LR multiplier: linear 0 -> 1 over warmup, then cosine 1 -> min_ratio until the budget ends.

    The budget is ``total_steps``, or a wall-clock budget of which ``time_used`` (0..1) is spent,
    whichever runs out first: with ``trainer.max_time`` the cosine reaches its end when the time
    does, however many steps fit in it.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    by_steps = 1.0 if total_steps <= warmup_steps else (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(1.0, max(by_steps, time_used))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
