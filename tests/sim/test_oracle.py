"""The oracle's earliest start equals what the node then really does."""

from hypothesis import given, settings, strategies as st

from dodoor.resources import NodeSpec, Task
from dodoor.sim.engine import EventLoop
from dodoor.sim.network import Network
from dodoor.sim.node import Entry, SimNode
from dodoor.sim.oracle import Oracle
from dodoor.sim.records import TaskRecords

demands = st.tuples(st.sampled_from([1.0, 2.0, 3.0]), st.sampled_from([100.0, 900.0]),
                    st.integers(1, 400).map(float), st.integers(0, 300).map(float))


@settings(max_examples=150, deadline=None)
@given(st.lists(demands, min_size=1, max_size=12), st.sampled_from([1, 2, 3]),
       st.integers(0, 3), demands, st.integers(0, 500).map(float), st.sampled_from([0.0, 40.0]))
def test_prediction_matches_the_replay(earlier, slots, in_flight, new, ask_at, overhead):
    spec = NodeSpec("n", 4, 1000, 0, slots)
    # everything the oracle may know of has arrived by ``ask_at`` or is in flight
    tasks = [Task(f"t{i}", c, m, 0, dur, min(at, ask_at))
             for i, (c, m, dur, at) in enumerate(earlier)]
    tasks.append(Task("new", new[0], new[1], 0, new[2], ask_at))
    loop = EventLoop()
    net = Network(loop, 5.0)
    records = TaskRecords(tasks)
    node = SimNode(0, spec, loop, net, records, start_overhead_ms=overhead)
    oracle = Oracle()
    # the first tasks are enqueued directly; the last ``in_flight`` of them are
    # sent at ``ask_at`` and so are still on the wire when the oracle is asked
    direct = len(earlier) - min(in_flight, len(earlier))
    for i, t in enumerate(tasks[:direct]):
        loop.call_at(t.arrival_ms, node.enqueue, Entry(i, (t.cores, t.memory_mb, 0.0),
                                                       t.duration_ms))
    loop.run(until_ms=ask_at)
    for i in range(direct, len(earlier)):
        t = tasks[i]
        entry = Entry(i, (t.cores, t.memory_mb, 0.0), t.duration_ms)
        node.inbound.append((ask_at + 5.0, entry))
        node.version += 1
        net.send("enqueue", node.enqueue, entry)
    predicted = oracle.earliest_start(node, (new[0], new[1], 0.0), ask_at + 5.0)
    net.send("enqueue", node.enqueue, Entry(len(earlier), (new[0], new[1], 0.0), new[2]))
    loop.run()
    assert records.start[-1] == predicted
