"""Seeded synthetic workloads: a paper-trace-like demand mix, Poisson arrivals at a target load."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

from dodoor.errors import ValidationError
from dodoor.resources import NodeSpec, Task

# (cores, memory MiB, disk MiB, weight): the most frequent demand vectors of the
# shipped azure_data_60.csv (Azure Packing 2020 VM sizes), weights in tasks per 10,000.
AZURE_MIX: tuple[tuple[float, float, float, float], ...] = (
    (2.0, 4893.0, 9046.0, 3047),
    (1.0, 2446.0, 2915.0, 1388),
    (2.0, 4893.0, 5428.0, 1058),
    (1.0, 2446.0, 4523.0, 866),
    (4.0, 22369.0, 13670.0, 708),
    (4.0, 9786.0, 14072.0, 644),
    (4.0, 9786.0, 10453.0, 316),
    (1.0, 5592.0, 3719.0, 298),
    (4.0, 19573.0, 14072.0, 285),
    (2.0, 22369.0, 8644.0, 255),
    (0.42, 1398.0, 1809.0, 221),
    (1.0, 524.0, 1809.0, 160),
)


@dataclass(frozen=True)
class Durations:
    """A duration distribution in ms: ``uniform`` on [low, high], ``exponential``
    with mean ``low`` (``high`` caps it), or ``lognormal`` with median ``low`` and
    sigma ``sigma`` (``high`` caps it)."""

    kind: str = "uniform"
    low: float = 1000.0
    high: float = 60000.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "exponential", "lognormal"):
            raise ValidationError("durations", f"unknown distribution {self.kind!r}")
        if not (0 < self.low <= self.high and math.isfinite(self.high)):
            raise ValidationError("durations", f"need 0 < low <= high, got {self.low}, {self.high}")

    def mean_ms(self) -> float:
        """The mean ignoring the cap (exact for uniform)."""
        if self.kind == "uniform":
            return (self.low + self.high) / 2
        if self.kind == "exponential":
            return self.low
        return self.low * math.exp(self.sigma ** 2 / 2)

    def draw(self, rng: random.Random) -> float:
        if self.kind == "uniform":
            value = rng.uniform(self.low, self.high)
        elif self.kind == "exponential":
            value = rng.expovariate(1.0 / self.low)
        else:
            value = rng.lognormvariate(math.log(self.low), self.sigma)
        return min(max(value, 1.0), self.high)


def synthetic_tasks(n: int, nodes: Sequence[NodeSpec], load: float = 0.9, seed: int = 0,
                    mix: Sequence[tuple[float, float, float, float]] = AZURE_MIX,
                    durations: Durations = Durations()) -> list[Task]:
    """``n`` tasks with demands drawn from ``mix`` (cores, memory, disk, weight) and
    Poisson arrivals whose rate makes the expected offered load ``load`` × slots."""
    if n < 0:
        raise ValidationError("tasks", f"must be >= 0, got {n}")
    if not (math.isfinite(load) and load > 0):
        raise ValidationError("load", f"must be a finite number > 0, got {load}")
    if not mix or any(w < 0 for *_, w in mix) or sum(w for *_, w in mix) <= 0:
        raise ValidationError("mix", "needs at least one entry with a positive weight")
    slots = sum(node.slots for node in nodes)
    if slots <= 0:
        raise ValidationError("nodes", "the cluster has no slots")
    rng = random.Random(f"{seed}/synthetic")
    vectors = [(c, m, d) for c, m, d, _ in mix]
    weights = [w for *_, w in mix]
    rate_per_ms = load * slots / durations.mean_ms()
    width = len(str(max(n - 1, 0)))
    now = 0.0
    tasks: list[Task] = []
    for i, (c, m, d) in enumerate(rng.choices(vectors, weights, k=n)):
        now += rng.expovariate(rate_per_ms)
        tasks.append(Task(f"s{i:0{width}d}", c, m, d, round(durations.draw(rng), 3),
                          round(now, 3)))
    return tasks
