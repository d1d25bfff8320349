"""Rebalancing queued work (--rebalance steal): exact moves, and every task runs once."""

from unittest import mock

from hypothesis import HealthCheck, given, settings, strategies as st

from dodoor.resources import NodeSpec, Task
from dodoor.sim.node import SimNode
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from tests.sim.test_scenarios import log_of

# Node A: 8 cores / 8 GiB, B: 8 cores / 16 GiB, one slot each. t0 (6 cores, 12000 MB)
# fits only B and ends at 100.5. With alpha = 0 the score is relative load only, and
# the scheduler never hears that t0 ended (b = 1000: no snapshot), so B looks loaded
# (RL 0.053) and t1-t4 (1 core, 256 MB, 1000 ms) all go to A (RL 0.0083 per task).
# k = 1: every placement reaches the load store as a delta 0.5 ms later.
A, B = 0, 1
NODES = [NodeSpec("A", 8, 8192, 0, 1), NodeSpec("B", 8, 16384, 0, 1)]
TASKS = [Task("t0", 6, 12000, 0, 100, 0)] + [
    Task(f"t{i}", 1, 256, 0, 1000, 10 * i) for i in range(1, 5)]
POLICY = "dodoor:alpha=0,k=1,b=1000"


def test_without_rebalancing_the_queue_on_a_waits():
    res = simulate(TASKS, NODES, POLICY, SimSettings(seed=0))
    assert log_of(res) == [
        (0.5, 0.5, 100.5, B),
        (10.5, 10.5, 1010.5, A),
        (20.5, 1010.5, 2010.5, A),
        (30.5, 2010.5, 3010.5, A),
        (40.5, 3010.5, 4010.5, A),
    ]


def test_an_agent_that_reports_a_free_slot_gets_a_queued_task():
    res = simulate(TASKS, NODES, POLICY, SimSettings(seed=0, rebalance="steal"))
    # B reports at 100.5 (t0 ended); the report reaches the store at 101.0, where A
    # holds 4 tasks on 1 slot: 3 queued >= 2. The cancel reaches A at 101.5, A hands
    # over its first queued task, t2, whose enqueue reaches B at 102.0. t2 keeps its
    # first placement time. When B reports again (1102.0), A's own report (1010.5)
    # shows t3 running and t4 queued: one queued, below 2, so t4 stays.
    assert log_of(res) == [
        (0.5, 0.5, 100.5, B),
        (10.5, 10.5, 1010.5, A),
        (20.5, 102.0, 1102.0, B),
        (30.5, 1010.5, 2010.5, A),
        (40.5, 2010.5, 3010.5, A),
    ]
    assert res.summary()["rebalance"] == {"moves": 1, "misses": 0}
    assert dict(res.counter.counts) == {"enqueue": 6, "cancel": 1, "deltas": 5,
                                        "node_state": 5, "completion": 5}


def test_a_queue_of_one_is_taken_with_min_queue_one():
    res = simulate(TASKS, NODES, POLICY,
                   SimSettings(seed=0, rebalance="steal", rebalance_min_queue=1))
    # as above, then at 1102.5 A's row shows t4 queued: it moves (cancel at 1103.0,
    # enqueue at 1103.5 on B)
    assert log_of(res)[4] == (40.5, 1103.5, 2103.5, B)
    assert res.summary()["rebalance"] == {"moves": 2, "misses": 0}


task_lists = st.lists(
    st.tuples(st.sampled_from([1, 2, 4]), st.sampled_from([256, 2048]),
              st.floats(1, 5000), st.floats(0, 2000)),
    min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task_lists, st.sampled_from(["dodoor", "dodoor-wait:d=4", "cached-power-of-two"]),
       st.integers(0, 3), st.floats(0, 2), st.integers(1, 3), st.integers(1, 3))
def test_every_task_starts_exactly_once_and_ends(specs, policy, seed, sigma, schedulers,
                                                  min_queue):
    tasks = [Task(f"t{i}", c, m, 0, dur, at) for i, (c, m, dur, at) in enumerate(specs)]
    nodes = [NodeSpec("a", 4, 4096, 0, 1), NodeSpec("b", 8, 8192, 0, 2),
             NodeSpec("c", 4, 4096, 0, 4)]
    starts: list[int] = []
    real_run = SimNode._run

    def run(node, entry, now):
        starts.append(entry.index)
        real_run(node, entry, now)

    with mock.patch.object(SimNode, "_run", run):
        res = simulate(tasks, nodes, f"{policy}{',' if ':' in policy else ':'}k=2,b=4",
                       SimSettings(seed=seed, estimate_sigma=sigma, schedulers=schedulers,
                                   rebalance="steal", rebalance_min_queue=min_queue))
    assert sorted(starts) == list(range(len(tasks)))
    r = res.records
    assert r.finished == len(tasks)
    assert all(r.end[i] >= r.start[i] >= r.placed[i] >= r.submit[i] for i in range(len(tasks)))
    moves = res.summary()["rebalance"]
    assert res.counter.counts["enqueue"] == len(tasks) + moves["moves"]
