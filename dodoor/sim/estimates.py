"""Wrong duration estimates: what a user declares, against what the task really takes.

Each task's declared duration is its true one times ``exp(σ·Z)``, Z standard
normal, drawn from the run's own stream (``{seed}/estimates``), so every policy
of a seed sees the same errors. The error is median-unbiased: a task is as
likely to be declared 2x too long as 2x too short, and with σ = 1 half the
declarations are off by more than 1.96x either way. Schedulers, their caches,
the score and the agents' pending work see only the declaration; the task
holds its slot for its true duration. The ideal bound is omniscient and uses
the true durations (docs/simulator.md, "Realistic conditions").
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Sequence

from dodoor.errors import ValidationError
from dodoor.resources import Task


def check_sigma(sigma: float) -> float:
    """``sigma`` if it is a usable log-normal spread, else an error naming it."""
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValidationError("estimate_sigma", f"must be finite and >= 0, got {sigma}")
    return sigma


def declared(tasks: Sequence[Task], sigma: float, rng: random.Random) -> list[Task]:
    """``tasks`` with each duration multiplied by its own log-normal error (σ = 0: unchanged)."""
    if check_sigma(sigma) == 0.0:
        return list(tasks)
    return [dataclasses.replace(t, duration_ms=t.duration_ms * math.exp(sigma * rng.gauss(0.0, 1.0)))
            for t in tasks]
