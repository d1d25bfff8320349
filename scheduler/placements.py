"""What a submission returns per task, the bounded log of placed ids, and the bounded
record of why some were not placed where this scheduler would have liked."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class Placement:
    task_id: str
    node: str | None
    error: str | None = None
    conflict: bool = False  # the id is held with a different task body (409)
    reason: str | None = None  # why it is where it is (the packing fallback's verdict)

    def as_dict(self) -> dict:
        out: dict = {"id": self.task_id, "node": self.node}
        if self.error is not None:
            out["error"] = self.error
        if self.reason is not None:
            out["reason"] = self.reason
        return out


class PlacementLog:
    """Bounded LRU of task id → node id, for idempotent resubmission and status."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._map: OrderedDict[str, str] = OrderedDict()

    def get(self, task_id: str) -> str | None:
        node = self._map.get(task_id)
        if node is not None:
            self._map.move_to_end(task_id)
        return node

    def put(self, task_id: str, node: str) -> None:
        self._map[task_id] = node
        self._map.move_to_end(task_id)
        while len(self._map) > self.limit:
            self._map.popitem(last=False)

    def put_many(self, task_ids: list[str], node: str) -> None:
        """``put`` for each id, in order (one trim at the end)."""
        m = self._map
        for task_id in task_ids:
            m[task_id] = node
            m.move_to_end(task_id)
        while len(m) > self.limit:
            m.popitem(last=False)

    def __len__(self) -> int:
        return len(self._map)


class ReasonLog:
    """Bounded LRU of task id → why the packing fallback found it no room (proven, or
    out of time): the reason its status gives while the agent's own gives none."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._map: OrderedDict[str, str] = OrderedDict()

    def get(self, task_id: str) -> str | None:
        return self._map.get(task_id)

    def put(self, task_id: str, reason: str) -> None:
        self._map[task_id] = reason
        self._map.move_to_end(task_id)
        while len(self._map) > self.limit:
            self._map.popitem(last=False)

    def __len__(self) -> int:
        return len(self._map)
