"""Sparrow late binding: open reservations and who won each."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from dodoor.resources import Task


@dataclass
class Reservation:
    """A task reserved on some agents; ``bound`` is the first to confirm."""

    task: Task
    targets: list[tuple[str, str]]  # (node id, agent url)
    bound: str | None = None
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def drop(self, nodes: set[str]) -> None:
        self.targets = [t for t in self.targets if t[0] not in nodes]


class Reservations:
    """Open reservations by task id; bound ones leave the book (later confirms get 409)."""

    def __init__(self) -> None:
        self._open: dict[str, Reservation] = {}

    def __len__(self) -> int:
        return len(self._open)

    def open(self, task: Task, targets: list[tuple[str, str]]) -> Reservation:
        res = Reservation(task, list(targets))
        self._open[task.task_id] = res
        return res

    def ids(self) -> list[str]:
        return list(self._open)

    def get(self, task_id: str) -> Reservation | None:
        return self._open.get(task_id)

    def close(self, task_id: str) -> None:
        self._open.pop(task_id, None)

    def bind(self, task_id: str, node_id: str) -> Reservation | None:
        """Bind to the first confirming node holding a reservation; None if too late."""
        res = self._open.get(task_id)
        if res is None or res.bound is not None:
            return None
        if node_id not in {t[0] for t in res.targets}:
            return None
        res.bound = node_id
        res.event.set()
        del self._open[task_id]
        return res
