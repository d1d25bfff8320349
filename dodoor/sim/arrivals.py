"""Bursty arrivals: a trace re-timed by an on/off process with its mean load held.

The process alternates ON and OFF periods whose lengths are exponential with
means ``on_ms`` and ``off_ms`` (the first period is ON). During OFF nobody
submits. During ON the trace plays ``peak = (on_ms + off_ms) / on_ms`` times
faster than its own timing, so over a cycle as much of the trace arrives as
steady replay would bring, only crowded into the ON part. Tasks keep their
order, demands and durations; only arrival times change.

Finally the re-timed arrivals are scaled about the first one so that their span
equals the original span: the offered load (Σ durations / span,
:func:`workloads.load.offered_load`) is then exactly what it was, not just in
expectation, and ``--load 0.9`` still means 0.9 on average. With the defaults
of ``dodoor simulate --arrivals bursty`` (ON 10 s, OFF 30 s) a 0.9 load comes as
bursts at 3.6x the slots separated by silences.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

from dodoor.errors import ValidationError
from dodoor.resources import Task


@dataclass(frozen=True)
class Bursts:
    """Mean ON and OFF period lengths of the on/off arrival process, in ms."""

    on_ms: float = 10_000.0
    off_ms: float = 30_000.0

    def __post_init__(self) -> None:
        for name in ("on_ms", "off_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValidationError(f"burst_{name}", f"must be finite and > 0, got {value}")

    @property
    def peak(self) -> float:
        """The arrival rate during ON as a multiple of the steady rate."""
        return (self.on_ms + self.off_ms) / self.on_ms

    @classmethod
    def parse(cls, text: str) -> "Bursts":
        """``ON/OFF`` in ms, e.g. ``10000/30000``."""
        on, sep, off = text.partition("/")
        try:
            if not sep:
                raise ValueError(text)
            return cls(float(on), float(off))
        except ValueError as exc:
            raise ValidationError("burst_ms", f"expected ON_MS/OFF_MS such as 10000/30000, "
                                              f"got {text!r}") from exc


def bursty(tasks: Sequence[Task], bursts: Bursts, rng: random.Random) -> list[Task]:
    """``tasks`` (sorted by arrival) re-timed by the on/off process (module docstring)."""
    if len(tasks) < 2:
        return list(tasks)
    first = tasks[0].arrival_ms
    peak = bursts.peak
    wall = 0.0  # process time at the start of the current ON period
    trace = 0.0  # trace time reached at that point
    span = rng.expovariate(1.0 / bursts.on_ms) * peak  # trace time this ON period covers
    warped = []
    for task in tasks:
        offset = task.arrival_ms - first
        while offset > trace + span:
            wall += span / peak + rng.expovariate(1.0 / bursts.off_ms)
            trace += span
            span = rng.expovariate(1.0 / bursts.on_ms) * peak
        warped.append(wall + (offset - trace) / peak)
    last = warped[-1]
    factor = (tasks[-1].arrival_ms - first) / last if last > 0 else 1.0
    return [t.with_arrival(first + w * factor) for t, w in zip(tasks, warped)]
