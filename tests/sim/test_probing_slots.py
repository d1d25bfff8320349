"""Exact event logs: probing power-of-two chooses by free slots first (docs/simulator.md).

Node A: 8 cores, one slot. Node B: 16 cores, four slots. t0 (10 cores) fits only
B; t1–t3 (1 core) fit both. A probe goes out in 0.5 ms, its reply comes back in
0.5 ms and the enqueue takes 0.5 ms, so every task is placed at submit + 1.5.
"""

import pytest

from dodoor.resources import NodeSpec, Task
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from tests.sim.test_scenarios import log_of

A, B = 0, 1
NODES = [NodeSpec("A", 8, 8192, 0, 1), NodeSpec("B", 16, 8192, 0, 4)]
TASKS = [
    Task("t0", 10, 512, 0, 1000, 0),
    Task("t1", 1, 256, 0, 500, 10),
    Task("t2", 1, 256, 0, 300, 20),
    Task("t3", 1, 256, 0, 50, 30),
]


@pytest.mark.parametrize("policy", ["power-of-two", "power-of-two-duration"])
def test_free_slots_decide_before_queue_or_pending(policy):
    res = simulate(TASKS[:3], NODES, policy, SimSettings(seed=1))
    assert log_of(res) == [
        (1.5, 1.5, 1001.5, B),  # only B holds 10 cores
        (11.5, 11.5, 511.5, B),  # B: 3 free slots against A's 1, though B has a task and work
        (21.5, 21.5, 321.5, B),  # B: 2 free slots against 1
    ]
    assert dict(res.counter.counts) == {"probe": 5, "probe_reply": 5, "enqueue": 3,
                                        "completion": 3}


def test_duration_variant_breaks_a_tie_in_free_slots_by_pending_work():
    res = simulate(TASKS, NODES, "power-of-two-duration", SimSettings(seed=1))
    # t3: one free slot each; A has no pending work, B about 2,200 ms
    assert log_of(res)[3] == (31.5, 31.5, 81.5, A)


def test_queue_length_counts_tasks_beyond_the_slots():
    # A: 1 slot, 16 GiB; B: 4 slots, 8 GiB. u0, u1 (12000 MB) fit only A: one runs, one
    # queues. v0-v3 fill B's four free slots. For w, neither has a free slot: A queues
    # 1 task (2 tasks, 1 slot), B none (4 tasks, 4 slots), so B wins though it has more
    # tasks; w waits there for v0's end at 1021.5.
    nodes = [NodeSpec("A", 8, 16384, 0, 1), NodeSpec("B", 16, 8192, 0, 4)]
    tasks = ([Task(f"u{i}", 1, 12000, 0, 1000, 10 * i) for i in range(2)]
             + [Task(f"v{i}", 1, 256, 0, 1000, 20 + 10 * i) for i in range(4)]
             + [Task("w", 1, 256, 0, 1000, 60)])
    res = simulate(tasks, nodes, "power-of-two", SimSettings(seed=1))
    assert log_of(res) == [
        (1.5, 1.5, 1001.5, A),
        (11.5, 1001.5, 2001.5, A),
        (21.5, 21.5, 1021.5, B),
        (31.5, 31.5, 1031.5, B),
        (41.5, 41.5, 1041.5, B),
        (51.5, 51.5, 1051.5, B),
        (61.5, 1021.5, 2021.5, B),
    ]
    assert res.counter.counts["probe"] == 12


@pytest.mark.parametrize("policy", ["power-of-two-count", "power-of-two-pending"])
def test_paper_variants_ignore_slots(policy):
    res = simulate(TASKS[:2], NODES, policy, SimSettings(seed=1))
    assert log_of(res) == [
        (1.5, 1.5, 1001.5, B),
        (11.5, 11.5, 511.5, A),  # A has no task and no pending work; its one slot is ignored
    ]
