"""Learned durations live: the scheduler learns from the ends of its tasks it sees.

The estimator is the core's :class:`dodoor.estimates.DurationLearner`, the one
the simulator's schedulers use. The data path needs no new message: a
scheduler already asks the agents holding its tasks for their statuses
whenever a client follows them (:mod:`scheduler.status`), and a succeeded
task's status carries when it started and when it finished on its agent. So
the scheduler remembers, for each task it placed, the kind
(:func:`dodoor.estimates.duration_key`) and the declared duration, and learns
from each succeeded status it resolves (each task once). A failed, cancelled
or lost task taught nothing about how long its kind runs.

What the estimate changes: the pending work this scheduler records for its
own placements in its cache and in the deltas it sends to the load store
(:class:`scheduler.paths.base.CachedDeltas`), and the pending work the agent
counts in the load it reports: the enqueue carries the estimate
(``Enqueue.estimate_ms``, ``EnqueueBatch.estimates_ms``) while the task itself,
and so the run and what clients see, keeps its declared duration.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from typing import Hashable

from dodoor.estimates import DurationLearner, duration_key
from dodoor.resources import Task
from dodoor.taskstates import SUCCEEDED
from dodoor.wire import TaskStatus


class LearnedDurations:
    """Per-kind duration estimates from the ends of this scheduler's own tasks."""

    def __init__(self, limit: int, learner: DurationLearner | None = None) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.learner = learner or DurationLearner()
        self.limit = limit  # tasks remembered until their end is seen (oldest dropped)
        self._placed: OrderedDict[str, tuple[Hashable, float]] = OrderedDict()
        self.learned = 0  # ends learned from

    def scored(self, task: Task) -> Task:
        """``task`` with the duration to count as its pending work; remembers it so that
        its end, once seen, is learned from."""
        key = duration_key(task)
        placed = self._placed
        placed[task.task_id] = (key, task.duration_ms)
        placed.move_to_end(task.task_id)
        while len(placed) > self.limit:
            placed.popitem(last=False)
        estimate = self.learner.estimate(key, task.duration_ms)
        return task if estimate == task.duration_ms else dataclasses.replace(task, duration_ms=estimate)

    def estimate_ms(self, task: Task) -> float | None:
        """The pending work the enqueue tells the agent to count for ``task``: its
        learned estimate, None while that is the declared duration."""
        estimate = self.learner.estimate(duration_key(task), task.duration_ms)
        return None if estimate == task.duration_ms else estimate

    def saw(self, status: TaskStatus) -> None:
        """A status an agent gave for one of this scheduler's tasks."""
        if status.state != SUCCEEDED or status.started_ms is None or status.finished_ms is None:
            return
        placed = self._placed.pop(status.task_id, None)
        if placed is None:  # not placed here, forgotten, or already learned from
            return
        ran_ms = status.finished_ms - status.started_ms
        if not (math.isfinite(ran_ms) and ran_ms > 0.0):
            return  # an agent clock step: no duration to learn
        key, declared_ms = placed
        self.learner.observe(key, declared_ms, ran_ms)
        self.learned += 1

    def summary(self) -> dict:
        """What ``/healthz`` shows: ends learned from, tasks awaiting their end, and per
        kind the completions seen and the factor its declarations are scaled by."""
        kinds = {}
        for key in self.learner.kinds():
            declared = self.learner.typical_declared(key)
            kinds["/".join(str(part) for part in key) if isinstance(key, tuple) else str(key)] = {
                "observed": self.learner.observed(key),
                "factor": self.learner.estimate(key, declared) / declared,
            }
        return {"learned": self.learned, "awaiting": len(self._placed), "kinds": kinds}
