"""What every placement path shares: the Protocol, one request's decisions, the counters.

A path is one policy kind's way of choosing nodes (docs/design.md §11,
``scheduler/paths``). The placer picks one path from its policy once and hands
it each task it has not seen before; a path either decides at once (the
decision joins the request's :class:`Decisions`, sent later by agent) or
returns a coroutine that places the task alone (the paths that ask agents
first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

import numpy as np

from dodoor.resources import Task
from dodoor.wire import Deltas
from scheduler.learning import LearnedDurations
from scheduler.placements import Placement
from scheduler.view import ClusterView

Target = tuple[str, str]  # (node id, agent url)
Prefs = tuple[int, ...]  # node indices, chosen first, of the node table at decision time
Decided = tuple[Prefs, tuple[tuple[str, ...], tuple[str, ...]]]  # + that table (ids, urls)
Item = tuple[int, Task, Prefs]  # (position in the request, task, preferences)


@dataclass(slots=True)
class Counters:
    """What the placer reports on ``/metrics``, counted by whichever path did it."""

    placements: int = 0
    failovers: int = 0
    confirms: int = 0  # resubmitted ids confirmed by the node holding them


@dataclass(slots=True)
class Decisions:
    """One request's decided tasks, by chosen node index of the current node table.

    ``pending`` holds tasks a path takes as one chunk (decided at :meth:`PlacementPath.flush`);
    None when the path decides each task as it comes. ``alone``: tasks a flush left to be
    placed alone (the packing fallback's), as (position, coroutine placing it).
    """

    groups: dict[int, list[Item]] = field(default_factory=dict)
    pending: list[tuple[int, Task, np.ndarray]] | None = None
    alone: list[tuple[int, Awaitable[Placement]]] = field(default_factory=list)

    def add(self, i: int, task: Task, prefs: Prefs) -> None:
        group = self.groups.get(prefs[0])
        if group is None:
            self.groups[prefs[0]] = [(i, task, prefs)]
        else:
            group.append((i, task, prefs))


class PlacementPath(Protocol):
    """One policy kind's placement (see the module docstring)."""

    policy: Any  # the path's policy spec (a pool path replaces it when the node table changes)

    def begin(self, stack: bool) -> Decisions:
        """A request's empty decisions; ``stack``: chunked decisions are allowed."""

    def add(self, i: int, task: Task, demand: np.ndarray,
            decisions: Decisions) -> Awaitable[Placement] | None:
        """Place ``task``: None when decided into ``decisions``, else a coroutine placing it."""

    def flush(self, decisions: Decisions) -> None:
        """Decide the pending chunk; called before the placer yields and at the end."""

    def after(self, placed: int) -> None:
        """A request placed ``placed`` tasks."""


class PlacesAlone:
    """The :class:`PlacementPath` methods of a path that places every task by itself
    (it asks agents first): its subclass gives ``place``."""

    def place(self, task: Task) -> Awaitable[Placement]:
        raise NotImplementedError

    def begin(self, stack: bool) -> Decisions:
        return Decisions()

    def add(self, i: int, task: Task, demand: np.ndarray,
            decisions: Decisions) -> Awaitable[Placement]:
        return self.place(task)

    def flush(self, decisions: Decisions) -> None:
        pass

    def after(self, placed: int) -> None:
        pass


class CachedDeltas:
    """The cached load deltas of this scheduler's own placements (only a CACHED policy
    keeps them): recorded when placing, taken back when an enqueue fails."""

    def __init__(self, view: ClusterView, emit: Callable[[Deltas], None], active: bool,
                 learned: LearnedDurations | None = None) -> None:
        self.view = view
        self.emit = emit
        self.active = active
        self.learned = learned  # learn_durations: pending work counted as learned

    def record_at(self, idx: int, task: Task) -> None:
        """Record ``task`` on node index ``idx``; a full batch of deltas goes to the store."""
        if self.learned is not None:
            task = self.learned.scored(task)
        batch = self.view.cache.record_placement(idx, task)
        if batch is not None:
            deltas = self.view.take_deltas(batch)
            if deltas is not None:
                self.emit(deltas)

    def record(self, node_id: str, task: Task) -> None:
        if self.active and (idx := self.view.index.get(node_id)) is not None:
            self.record_at(idx, task)

    def undo(self, node_id: str, task: Task) -> None:
        if self.active and (idx := self.view.index.get(node_id)) is not None:
            if self.learned is not None:  # take back what record_at counted
                task = self.learned.scored(task)
            self.view.cache.undo_placement(idx, task)


def target(view: ClusterView, idx: int) -> Target:
    """Node index ``idx`` of the current node table as (node id, agent url)."""
    return view.node_ids[idx], view.urls[idx]
