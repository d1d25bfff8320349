"""Offered load of a trace on a cluster, and rescaling arrivals to a target load (docs/design.md §7).

Offered load = Σ durations / trace span, in busy slots; ``load`` is that as a
fraction of the cluster's slots. Stretching arrivals lowers it, compressing
raises it; durations and demands are left alone.
"""

from __future__ import annotations

import math
from typing import Sequence

from dodoor.errors import ValidationError
from dodoor.resources import NodeSpec, Task


def trace_span_ms(tasks: Sequence[Task]) -> float:
    """Time from the first to the last arrival."""
    if not tasks:
        return 0.0
    arrivals = [t.arrival_ms for t in tasks]
    return max(arrivals) - min(arrivals)


def offered_load(tasks: Sequence[Task], nodes: Sequence[NodeSpec]) -> float:
    """Σ durations / span, as a fraction of the cluster's slots."""
    slots = sum(n.slots for n in nodes)
    span = trace_span_ms(tasks)
    if slots <= 0 or span <= 0:
        raise ValidationError("load", f"undefined for {len(tasks)} tasks spanning {span} ms "
                                      f"on {slots} slots")
    return sum(t.duration_ms for t in tasks) / span / slots


def scale_to_load(tasks: Sequence[Task], nodes: Sequence[NodeSpec], load: float) -> list[Task]:
    """The tasks with arrivals scaled about the first one so the offered load is ``load``."""
    if not (math.isfinite(load) and load > 0):
        raise ValidationError("load", f"must be a finite number > 0, got {load}")
    factor = offered_load(tasks, nodes) / load
    first = min(t.arrival_ms for t in tasks)
    return [t.with_arrival(first + (t.arrival_ms - first) * factor) for t in tasks]
