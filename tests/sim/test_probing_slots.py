"""Exact event logs: probing power-of-two chooses by free slots first (docs/simulator.md).

Node A: 8 cores, one slot. Node B: 16 cores, four slots. t0 (10 cores) fits only
B; t1–t3 (1 core) fit both. A probe goes out in 0.5 ms, its reply comes back in
0.5 ms and the enqueue takes 0.5 ms, so every task is placed at submit + 1.5.
"""

import pytest

from dodoor.resources import NodeSpec, Task
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate

A, B = 0, 1
NODES = [NodeSpec("A", 8, 8192, 0, 1), NodeSpec("B", 16, 8192, 0, 4)]
TASKS = [
    Task("t0", 10, 512, 0, 1000, 0),
    Task("t1", 1, 256, 0, 500, 10),
    Task("t2", 1, 256, 0, 300, 20),
    Task("t3", 1, 256, 0, 50, 30),
]


def log_of(result):
    r = result.records
    return [(r.placed[i], r.start[i], r.end[i], r.node[i]) for i in range(len(r))]


@pytest.mark.parametrize("policy", ["power-of-two", "power-of-two-duration"])
def test_free_slots_decide_before_queue_or_pending(policy):
    res = simulate(TASKS, NODES, policy, SimSettings(seed=1))
    assert log_of(res) == [
        (1.5, 1.5, 1001.5, B),  # only B holds 10 cores
        (11.5, 11.5, 511.5, B),  # B: 3 free slots against A's 1, though B has a task and work
        (21.5, 21.5, 321.5, B),  # B: 2 free slots against 1
        (31.5, 31.5, 81.5, A),  # 1 free slot each: A's empty queue / no pending work wins
    ]
    assert dict(res.counter.counts) == {"probe": 7, "probe_reply": 7, "enqueue": 4,
                                        "completion": 4}


@pytest.mark.parametrize("policy", ["power-of-two-count", "power-of-two-pending"])
def test_paper_variants_ignore_slots(policy):
    res = simulate(TASKS[:2], NODES, policy, SimSettings(seed=1))
    assert log_of(res) == [
        (1.5, 1.5, 1001.5, B),
        (11.5, 11.5, 511.5, A),  # A has no task and no pending work; its one slot is ignored
    ]
