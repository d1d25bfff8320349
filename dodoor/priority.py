"""Priority classes: the range, the default, the names, aging and the mix option.

A task's ``priority`` is an integer class from :data:`MIN_PRIORITY` to
:data:`MAX_PRIORITY`; a higher value is more important, as in Kubernetes'
PriorityClass. A task without one gets :data:`DEFAULT_PRIORITY`, like a pod
without a class in a cluster whose global default class is "normal"; one class
(``low``) sits below it for work that should yield. docs/design.md §12.

Aging is the starvation guard of the agents' queues: a waiting entry's
*effective* class rises by one per ``aging_ms`` waited, up to the top class.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, Mapping, Sequence

MIN_PRIORITY = 0
MAX_PRIORITY = 3
DEFAULT_PRIORITY = 1
N_CLASSES = MAX_PRIORITY - MIN_PRIORITY + 1
CLASS_NAMES: Mapping[str, int] = {"low": 0, "normal": 1, "high": 2, "critical": 3}
# one class per minute waited: a low task waits at most 3 minutes behind newer critical ones
DEFAULT_AGING_MS = 60_000.0


def class_name(priority: int) -> str:
    """The name of class ``priority`` (``high``), for reports."""
    for name, value in CLASS_NAMES.items():
        if value == priority:
            return name
    raise ValueError(f"priority must be in {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority!r}")


def effective_priority(priority: int, waited_ms: float, aging_ms: float) -> int:
    """The class an entry of ``priority`` ranks in after ``waited_ms`` in a queue.

    ``aging_ms`` of 0 or infinity turns aging off.
    """
    if aging_ms <= 0.0 or not math.isfinite(aging_ms) or waited_ms < aging_ms:
        return priority
    return min(MAX_PRIORITY, priority + int(waited_ms // aging_ms))


def parse_priority_mix(text: str) -> dict[int, float]:
    """``high=0.2,normal=0.8`` (names or numbers) → {class: share}; shares sum to 1."""
    mix: dict[int, float] = {}
    for part in text.split(","):
        name, sep, share_text = part.strip().partition("=")
        if not sep:
            raise ValueError(f"priority mix item {part!r} is not class=share")
        name = name.strip()
        if name in CLASS_NAMES:
            cls = CLASS_NAMES[name]
        elif name.lstrip("-").isdigit() and MIN_PRIORITY <= int(name) <= MAX_PRIORITY:
            cls = int(name)
        else:
            raise ValueError(f"priority mix class {name!r} is not one of "
                             f"{', '.join(CLASS_NAMES)} or {MIN_PRIORITY}..{MAX_PRIORITY}")
        try:
            share = float(share_text)
        except ValueError as exc:
            raise ValueError(f"priority mix share {share_text!r} is not a number") from exc
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"priority mix share {share_text!r} must be in [0, 1]")
        mix[cls] = mix.get(cls, 0.0) + share
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"priority mix {text!r} shares sum to {total:g}, not 1")
    return mix


def draw_priorities(n: int, mix: Mapping[int, float], seed: int | str) -> list[int]:
    """``n`` classes drawn independently from ``mix`` with ``random.Random(seed)``."""
    rng = random.Random(f"{seed}/priority-mix")
    classes: Sequence[int] = sorted(mix)
    weights = [mix[c] for c in classes]
    return rng.choices(classes, weights, k=n) if n else []


def apply_priority_mix(tasks: Sequence[Any], mix: Mapping[int, float], seed: int | str) -> list:
    """``tasks`` (``dodoor.resources.Task``) with classes drawn from ``mix``."""
    drawn = draw_priorities(len(tasks), mix, seed)
    return [dataclasses.replace(t, priority=p) for t, p in zip(tasks, drawn)]
