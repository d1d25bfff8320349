"""Learned durations: a per-kind duration estimate learned online from completions.

Declared durations can be wrong by large factors (docs/simulator.md, "Realistic
conditions"). A scheduler that sees each of its tasks end learns, per kind of
task (:func:`duration_key`: its function, else its image, else its demand
shape), two things in log space with exponentially weighted moments:

* the kind's true durations: mean μ and variance s² of log(true);
* the declarations' error: mean b and variance v of log(declared / true).

A new task's estimate is the posterior mean of its log true duration given the
kind's prior N(μ, s²) and the declaration as a measurement with bias b and
noise v: ``(s²·(log declared − b) + v·μ) / (s² + v)``. So a kind whose
declarations are biased is corrected by its bias (v small: the declaration,
unbiased, decides); a kind whose declarations are noise falls back to what
its tasks usually take (v large: μ decides). Until a kind has ``warmup``
completions the declaration is used as it is, and exact declarations (every
ratio exactly 1) give back the declaration to the bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable

from dodoor.errors import ValidationError
from dodoor.resources import Task


def duration_key(task: Task) -> Hashable:
    """The kind a task's duration is learned under: its function, image or demand shape."""
    if task.function:
        return ("function", task.function)
    if task.image:
        return ("image", task.image)
    return ("shape", task.cores, task.memory_mb, task.disk_mb)


class _Moments:
    """Exponentially weighted mean and variance; the first 1/weight values weigh equally."""

    __slots__ = ("n", "mean", "var")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def add(self, x: float, weight: float) -> None:
        self.n += 1
        w = max(weight, 1.0 / self.n)
        diff = x - self.mean
        self.mean += w * diff
        self.var = (1.0 - w) * (self.var + w * diff * diff)


@dataclass
class _Kind:
    true_log: _Moments
    error_log: _Moments


class DurationLearner:
    """Per-kind estimates from completions (module docstring); one per scheduler."""

    def __init__(self, weight: float = 0.05, warmup: int = 8) -> None:
        if not (math.isfinite(weight) and 0.0 < weight <= 1.0):
            raise ValidationError("learn_weight", f"must be in (0, 1], got {weight}")
        if warmup < 1:
            raise ValidationError("learn_warmup", f"must be >= 1, got {warmup}")
        self.weight = weight
        self.warmup = warmup
        self._kinds: dict[Hashable, _Kind] = {}

    def observe(self, key: Hashable, declared_ms: float, true_ms: float) -> None:
        """A task of kind ``key`` declared ``declared_ms`` ended after ``true_ms``."""
        if not (declared_ms > 0.0 and true_ms > 0.0):
            raise ValidationError("duration_ms", f"durations must be > 0, got declared "
                                                 f"{declared_ms} and true {true_ms}")
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = _Kind(_Moments(), _Moments())
        kind.true_log.add(math.log(true_ms), self.weight)
        kind.error_log.add(math.log(declared_ms / true_ms), self.weight)

    def estimate(self, key: Hashable, declared_ms: float) -> float:
        """The duration to score a new task of kind ``key`` declared ``declared_ms`` with."""
        kind = self._kinds.get(key)
        if kind is None or kind.true_log.n < self.warmup:
            return declared_ms
        bias, noise = kind.error_log.mean, kind.error_log.var
        if noise == 0.0:
            return declared_ms if bias == 0.0 else declared_ms * math.exp(-bias)
        spread = kind.true_log.var
        corrected = math.log(declared_ms) - bias
        return math.exp((spread * corrected + noise * kind.true_log.mean) / (spread + noise))

    def kinds(self) -> list[Hashable]:
        """Every kind seen so far, in the order first seen."""
        return list(self._kinds)

    def typical_declared(self, key: Hashable) -> float:
        """The kind's typical declaration: exp of the mean log declared duration."""
        kind = self._kinds[key]
        return math.exp(kind.true_log.mean + kind.error_log.mean)

    def observed(self, key: Hashable) -> int:
        """How many completions of kind ``key`` have been seen."""
        kind = self._kinds.get(key)
        return 0 if kind is None else kind.true_log.n
