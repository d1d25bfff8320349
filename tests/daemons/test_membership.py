"""Fences and remembered members (scheduler.loadstore.membership, LoadStoreState), exactly, on a ManualClock."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dodoor.clock import ManualClock
from dodoor.wire import NodeState
from scheduler.loadstore.state import LoadStoreState
from scheduler.loadstore.membership import KEEP_FENCES, Membership, MembershipError, MembershipFile


def report(node_id: str, life: str, seq: int = 1, task_ids: tuple[str, ...] = ()) -> NodeState:
    return NodeState(node_id, f"http://127.0.0.1:9/{node_id}", seq, np.array([4.0, 1024.0, 0.0]),
                     2, np.zeros(5), incarnation=life, task_ids=task_ids)


def store_on(path, clock: ManualClock) -> tuple[LoadStoreState, MembershipFile]:
    file = MembershipFile(str(path))
    return LoadStoreState(b=80, dead_after_ms=1000, clock=clock, membership=file.load()), file


def test_a_dead_life_is_fenced_its_tasks_read_lost_and_a_new_life_is_welcome(tmp_path):
    clock = ManualClock()
    store, _ = store_on(tmp_path / "m.json", clock)
    store.report(report("a", "life-1", task_ids=("t1",)))
    clock.advance(1001)
    assert store.expire() is True
    assert store.dead() == ("a",) and store.snapshot().dead == ("a",)
    assert store.is_fenced(report("a", "life-1")) and not store.is_fenced(report("a", "life-2"))
    with pytest.raises(ValueError, match="declared dead"):
        store.report(report("a", "life-1", seq=2))
    assert store.dead() == ("a",)
    assert store.report(report("a", "life-2", seq=3)) is True  # back, as a new life
    assert store.dead() == () and store.snapshot().node_ids == ("a",)


def test_members_and_fences_outlive_a_store_restart(tmp_path):
    clock = ManualClock()
    store, file = store_on(tmp_path / "m.json", clock)
    for node in ("a", "b"):
        store.report(report(node, f"{node}-1"))
    clock.advance(1001)
    store.report(report("b", "b-1", seq=2))
    store.expire()
    assert store.membership_dirty
    file.save(store.membership)
    # a new store process: it knows both nodes and a's fenced life
    restarted, _ = store_on(tmp_path / "m.json", clock)
    assert restarted.is_fenced(report("a", "a-1"))
    # remembered nodes are out of snapshots until they report to this store ...
    assert restarted.snapshot().node_ids == ()
    restarted.report(report("b", "b-1", seq=3))
    assert restarted.snapshot().node_ids == ("b",)
    # ... and a remembered node that never reports is declared dead (and fenced) in time
    clock.advance(1001)
    restarted.report(report("b", "b-1", seq=4))
    assert restarted.expire() is True and restarted.dead() == ("a",)


def test_fences_per_node_are_bounded():
    m = Membership()
    for i in range(KEEP_FENCES + 3):
        m.fence("a", f"life-{i}")
    assert m.fenced["a"] == [f"life-{i}" for i in range(3, KEEP_FENCES + 3)]
    m.fence("a", "")  # an agent that predates lives cannot be fenced
    assert not m.is_fenced("a", "")


def test_an_unreadable_membership_file_is_one_clear_error(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(MembershipError, match="format 99"):
        MembershipFile(str(path)).load()
    path.write_text("{not json")
    with pytest.raises(MembershipError, match=str(path)):
        MembershipFile(str(path)).load()


def test_reported_ids_feed_the_task_index():
    store = LoadStoreState(b=80, dead_after_ms=1000, clock=ManualClock())
    store.report(dataclasses.replace(report("a", "a-1"), task_ids=("t1", "t2")))
    assert store.index.node_of("t1") == "a" and store.index.node_of("t2") == "a"


def test_after_a_restart_the_index_is_complete_once_every_member_resent_its_ids(tmp_path):
    clock = ManualClock()
    store, file = store_on(tmp_path / "m.json", clock)
    store.report(dataclasses.replace(report("a", "a-1"), task_ids_complete=True))
    assert store.index_complete()
    file.save(store.membership)
    restarted, _ = store_on(tmp_path / "m.json", clock)
    assert not restarted.index_complete()  # a may hold ids this store never heard of
    restarted.report(report("a", "a-1", seq=2, task_ids=("t1",)))
    assert not restarted.index_complete()
    restarted.report(dataclasses.replace(report("a", "a-1", seq=3, task_ids=("t2",)),
                                         task_ids_complete=True))
    assert restarted.index_complete() and restarted.index.node_of("t1") == "a"
