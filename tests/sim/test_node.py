"""A lone simulated node: FIFO with backfill, slots, coalesced state reports."""

import pytest

from dodoor.resources import NodeSpec, Task
from dodoor.sim.engine import EventLoop, Mailbox
from dodoor.sim.network import Network
from dodoor.sim.node import Entry, SimNode
from dodoor.sim.records import TaskRecords


def build(spec, tasks, reporter=None, interval=100.0, loop=None):
    loop = loop or EventLoop()
    net = Network(loop, 0.0)
    records = TaskRecords(tasks)
    node = SimNode(0, spec, loop, net, records, reporter, interval)
    for i, t in enumerate(tasks):
        entry = Entry(i, (t.cores, t.memory_mb, t.disk_mb), t.duration_ms)
        loop.call_at(t.arrival_ms, node.enqueue, entry)
    return loop, net, node, records


def test_backfill_starts_later_tasks_that_fit_in_queue_order():
    spec = NodeSpec("n", 4, 4096, 0, 2)
    tasks = [
        Task("a", 3, 100, 0, 100, 0),  # starts at 0
        Task("b", 2, 100, 0, 50, 1),  # 1 core free: waits
        Task("c", 1, 100, 0, 30, 2),  # fits beside a: backfilled at once
        Task("d", 1, 100, 0, 10, 3),  # both slots busy: waits behind b
        Task("e", 1, 100, 0, 5, 4),  # waits behind d
    ]
    loop, _, node, rec = build(spec, tasks)
    loop.run()
    # c ends at 32: b still does not fit, d (first in queue order that fits) takes the slot;
    # d ends at 42: e; a ends at 100: b.
    assert rec.start == [0, 100, 2, 32, 42]
    assert rec.end == [100, 150, 32, 42, 47]
    assert len(node.rq) == 0 and node.rq.waiting == [] and node.rq.free == [4, 4096, 0]


def test_state_columns_committed_and_pending():
    spec = NodeSpec("n", 4, 4096, 100, 1)
    tasks = [Task("a", 2, 1000, 5, 100, 0), Task("b", 1, 500, 0, 40, 0)]
    loop, _, node, _ = build(spec, tasks)
    loop.run(until_ms=30)
    # a runs (70 ms left), b queued (40 ms): committed covers both
    assert node.state().tolist() == [3, 1500, 5, 2, 110]
    loop.run(until_ms=120)
    assert node.state().tolist() == [1, 500, 0, 1, 20]


def test_reports_are_coalesced_to_one_per_interval():
    spec = NodeSpec("n", 8, 8192, 0, 4)
    tasks = [Task(f"t{i}", 1, 100, 0, d, 0) for i, d in enumerate((10, 20, 50, 300))]
    loop = EventLoop()
    mailbox = Mailbox(loop)
    loop, net, _, _ = build(spec, tasks, reporter=mailbox, loop=loop)
    loop.run()
    loop.call_at(loop.now + 1, lambda: None)  # the mailbox gives what arrived before an event
    loop.run()
    reports = [(t, row[3]) for t, (node, row) in mailbox.take()]
    # ends at 10 (sent), 20 and 50 (one deferred report at 110), 300 (sent)
    assert reports == [(10, 3), (110, 1), (300, 0)]
    assert net.counter.counts["node_state"] == 3
    assert net.counter.counts["completion"] == 4


def test_reservation_holds_room_until_assigned_or_cancelled():
    spec = NodeSpec("n", 2, 4096, 0, 1)
    loop = EventLoop()
    net = Network(loop, 0.0)
    tasks = [Task("x", 1, 10, 0, 100, 0), Task("y", 1, 10, 0, 100, 0)]
    rec = TaskRecords(tasks)
    node = SimNode(0, spec, loop, net, rec)
    confirms = []

    class Job:
        def on_confirm(self, entry, idx):
            confirms.append((loop.now, entry.index, idx))

    rx = Entry(0, (1, 10, 0), 100, Job())
    ry = Entry(1, (1, 10, 0), 100, Job())
    node.reserve(rx)
    node.reserve(ry)  # the only slot is held by rx
    loop.run()
    assert confirms == [(0, 0, 0)] and node.rq.waiting == [ry]
    node.cancel(rx)  # releases the slot: ry gets it and confirms
    loop.run()
    assert confirms == [(0, 0, 0), (0, 1, 0)]
    node.assign(ry)
    loop.run()
    assert rec.start[1] == 0 and rec.end[1] == 100 and node.rq.free_slots == 1
    assert len(node.rq) == 0


def test_engine_orders_by_time_then_scheduling_order():
    loop = EventLoop()
    seen = []
    loop.call_at(5, seen.append, "b")
    loop.call_at(1, seen.append, "a")
    loop.call_at(5, seen.append, "c")
    assert loop.run(until_ms=4) == 1 and loop.now == 4  # the clock reaches the horizon
    loop.run()
    assert seen == ["a", "b", "c"] and loop.now_ms() == 5
    with pytest.raises(ValueError, match="cannot schedule at 3"):
        loop.call_at(3, seen.append, "late")
