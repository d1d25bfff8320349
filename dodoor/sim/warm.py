"""Warm containers on a simulated node: which tasks start warm, and what they pay.

The live agent keeps, per image, up to ``per_image`` idle containers for
``idle_ms`` after a task ends in one (``node_agent/warm_pool.py``,
docs/docker.md). Here the same rule decides a task's start overhead: a
warm-eligible task that finds an idle container of its image on its node pays
``warm_ms``, any other pays the cold overhead, and on ending it leaves its
container idle unless the node already keeps ``per_image`` of them. Eligible
are ``function`` tasks and tasks labelled ``warm=true`` (``warm=false`` opts out),
keyed by their image (function tasks by their function's image).
"""

from __future__ import annotations

from typing import Sequence

from dodoor.resources import Task

FUNCTION_IMAGE = "<function image>"  # every named function runs on one image


def warm_key(task: Task) -> str | None:
    """The pool a task draws from, or None when it always starts cold."""
    choice = str(task.labels.get("warm", "")).lower()
    if choice == "false" or (task.function is None and choice != "true"):
        return None
    if task.function is not None:
        return FUNCTION_IMAGE
    return task.image or ""


class WarmContainers:
    """The idle warm containers of one node, by image (``keys[i]`` is task i's image)."""

    __slots__ = ("keys", "per_image", "idle_ms", "warm_ms", "idle", "warm_starts")

    def __init__(self, keys: Sequence[str | None], per_image: int, idle_ms: float,
                 warm_ms: float) -> None:
        self.keys = keys
        self.per_image = per_image
        self.idle_ms = idle_ms
        self.warm_ms = warm_ms
        self.idle: dict[str, list[float]] = {}  # image -> times its idle containers were freed
        self.warm_starts = 0

    def overhead(self, index: int, now: float, cold_ms: float) -> float:
        """Task ``index`` starts now: takes an idle container (warm) or starts one (cold)."""
        key = self.keys[index]
        if key is None:
            return cold_ms
        idle = self._live(key, now)
        if idle:
            idle.pop()  # the most recently freed, as the live pool
            self.warm_starts += 1
            return self.warm_ms
        return cold_ms

    def release(self, index: int, now: float) -> None:
        """Task ``index`` ended now: its container stays idle if the pool has room."""
        key = self.keys[index]
        if key is not None:
            idle = self._live(key, now)
            if len(idle) < self.per_image:
                idle.append(now)

    def _live(self, key: str, now: float) -> list[float]:
        """The image's idle containers, without those idle for ``idle_ms`` (reaped)."""
        idle = self.idle.setdefault(key, [])
        expired = 0
        while expired < len(idle) and now - idle[expired] >= self.idle_ms:
            expired += 1
        del idle[:expired]
        return idle
