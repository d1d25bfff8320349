"""The placement paths as objects: one per policy kind, and the forwarder's failover."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dodoor.cache import N_STATE
from dodoor.clock import MonotonicClock
from dodoor.resources import Task
from dodoor.service.peers import PeerError
from dodoor.wire import Snapshot
from scheduler.paths.base import CachedDeltas, Counters
from scheduler.paths.cached import CachedPath
from scheduler.paths.forwarder import Forwarder
from scheduler.paths.pool import PoolPath
from scheduler.paths.probing import ProbingPath
from scheduler.paths.reservation import ReservationPath
from scheduler.placements import PlacementLog
from scheduler.placer import Placer
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView

NODES = ("a", "b", "c", "d")


def _view() -> ClusterView:
    view = ClusterView("sched-t", k=100)
    n = len(NODES)
    view.apply(Snapshot(1, NODES, tuple(f"http://{x}" for x in NODES),
                        np.tile([8.0, 8192.0, 100.0], (n, 1)), np.full(n, 4.0),
                        np.zeros((n, N_STATE))), 0.0)
    return view


@pytest.mark.parametrize("policy, path", [
    ("dodoor", CachedPath), ("dodoor-wait", CachedPath), ("cached-power-of-two", CachedPath),
    ("random", CachedPath), ("power-of-two", ProbingPath), ("power-of-two-duration", ProbingPath),
    ("sparrow", ReservationPath), ("prequal", PoolPath),
])
def test_the_placer_holds_the_path_of_its_policy_kind(policy, path):
    placer = Placer(SchedulerSettings(policy=policy), _view(), None, random.Random(1),
                    MonotonicClock(), lambda deltas: None, None)
    assert type(placer.path) is path
    assert placer.policy is placer.path.policy and placer.policy.kind is placer.kind


class _Sender:
    """Agents by node id: None accepts, a PeerError is the agent's answer."""

    def __init__(self, answers: dict[str, PeerError | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def enqueue_settled(self, node_id, url, task, coalesce):
        self.asked.append(node_id)
        return self.answers.get(node_id)


def _forwarder(answers, cached=True):
    view = _view()
    settings = SchedulerSettings(max_failover=0)
    placed, counters = PlacementLog(10), Counters()
    deltas = CachedDeltas(view, lambda d: None, active=cached)
    sender = _Sender(answers)
    return Forwarder(settings, view, sender, placed, counters, deltas,
                     random.Random(3)), sender, view


async def test_a_refused_enqueue_moves_the_task_and_its_cached_delta_to_the_next_target():
    fwd, sender, view = _forwarder({"a": PeerError("full", 503)})
    task = Task("t1", 1.0, 512.0, 0.0, 100.0)
    view.cache.record_placement(0, task)  # the decision recorded on "a"
    placement = await fwd.forward(task, [("a", "http://a"), ("b", "http://b")], recorded=True)
    assert (placement.node, placement.error) == ("b", None)
    assert sender.asked == ["a", "b"]
    assert (fwd.counters.placements, fwd.counters.failovers) == (1, 1)
    assert fwd.placed.get("t1") == "b"
    assert view.cache.state[:, 3].tolist() == [0.0, 1.0, 0.0, 0.0]


async def test_an_unknown_outcome_stays_with_its_node_and_a_resubmission_asks_it_first():
    fwd, sender, view = _forwarder({"a": PeerError("timeout", outcome_unknown=True)})
    task = Task("t2", 1.0, 512.0, 0.0, 100.0)
    first = await fwd.forward(task, [("a", "http://a"), ("b", "http://b")], recorded=False)
    assert first.node is None and "outcome unknown on node a" in first.error
    assert sender.asked == ["a"] and fwd.unresolved == {"t2": "a"}
    assert fwd.counters.failovers == 0

    fwd.sender.gave_up_on = lambda node_id: False
    sender.answers.clear()
    again = await fwd.place_unresolved(task)
    assert again.node == "a" and sender.asked == ["a", "a"] and fwd.unresolved == {}
