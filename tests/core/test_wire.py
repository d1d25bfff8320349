"""The encode/decode seam: round trips for every message, one error type for every failure."""

import dataclasses

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dodoor import wire, wire_codec
from dodoor.errors import DecodeError
from dodoor.resources import Task

ids = st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s and s.strip())
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
tasks = st.builds(
    Task,
    task_id=ids,
    cores=st.floats(0.001, 512.0),
    memory_mb=st.integers(1, 1 << 20).map(float),
    disk_mb=st.integers(0, 1 << 20).map(float),
    duration_ms=st.floats(0.001, 1e9),
    command=st.none() | st.lists(st.text(max_size=10).filter(lambda s: "\x00" not in s),
                                 min_size=1, max_size=4).map(tuple),
    env=st.dictionaries(ids, st.text(max_size=10).filter(lambda s: "\x00" not in s), max_size=3),
)


def matrices(rows):
    return st.lists(st.lists(finite, min_size=5, max_size=5), min_size=rows, max_size=rows).map(
        lambda r: np.array(r, dtype=np.float64).reshape(rows, 5)
    )


def assert_same(a, b):
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
            assert y.dtype == np.float64
        else:
            assert x == y, f.name


@given(tasks, ids)
def test_enqueue_round_trips(task, sched):
    msg = wire.Enqueue(task, sched)
    assert_same(wire.decode(wire.encode(msg), wire.Enqueue), msg)


estimates = st.floats(0.001, 1e9)


@given(tasks, ids, st.none() | estimates)
def test_enqueue_with_an_estimate_round_trips(task, sched, estimate):
    msg = wire.Enqueue(task, sched, "life-1", estimate_ms=estimate)
    assert_same(wire.decode(wire.encode(msg), wire.Enqueue), msg)


@given(st.lists(st.tuples(tasks, estimates), min_size=1, max_size=5), st.booleans())
def test_enqueue_batch_with_estimates_round_trips(pairs, with_estimates):
    msg = wire.EnqueueBatch(tuple(t for t, _ in pairs), "s0", "life-1",
                            tuple(e for _, e in pairs) if with_estimates else ())
    assert_same(wire.decode(wire.encode(msg), wire.EnqueueBatch), msg)


def test_estimates_are_left_out_unless_given():
    """No estimate, no field: sizes and agents that predate the field are unchanged."""
    t = Task("t1", 1.0, 256.0, 0.0, 1000.0)
    for msg, name in ((wire.Enqueue(t, "s0"), "estimate_ms"),
                      (wire.EnqueueBatch((t, t), "s0"), "estimates_ms")):
        assert name not in msgpack.unpackb(wire.encode(msg), raw=False)["body"]
    assert len(wire.encode(wire.Enqueue(t, "s0"))) < len(
        wire.encode(wire.Enqueue(t, "s0", estimate_ms=100.0)))
    body = msgpack.unpackb(wire.encode(wire.EnqueueBatch((t, t), "s0", "", (5.0, 7.5))),
                           raw=False)["body"]
    assert body["estimates_ms"] == [5.0, 7.5]


@pytest.mark.parametrize("body, fragment", [
    ({"estimate_ms": 0.0}, "finite number of ms > 0, got 0.0"),
    ({"estimate_ms": -3.0}, "got -3.0"),
    ({"estimate_ms": float("nan")}, "got nan"),
    ({"estimate_ms": "5"}, "enqueue.estimate_ms: expected a number"),
])
def test_a_bad_estimate_is_a_decode_error(body, fragment):
    task = Task("t1", 1.0, 256.0, 0.0, 1000.0).to_dict()
    with pytest.raises(DecodeError, match=fragment):
        wire.decode(_envelope({"task": task, "scheduler_id": "s0", **body}, kind="enqueue"))


def test_a_batch_needs_one_estimate_per_task():
    task = Task("t1", 1.0, 256.0, 0.0, 1000.0)
    body = wire.EnqueueBatch((task, task), "s0").to_body()
    bad = _envelope({**body, "estimates_ms": [5.0]}, kind="enqueue_batch")
    with pytest.raises(DecodeError, match="enqueue_batch: 1 estimates for 2 tasks"):
        wire.decode(bad)
    with pytest.raises(ValueError, match="got inf"):
        wire.EnqueueBatch((Task("t1", 1.0, 1.0),), "s0", "", (float("inf"),))


@given(st.integers(0, 6).flatmap(lambda n: st.tuples(st.just(n), matrices(n))), st.integers(0, 2**40))
def test_snapshot_round_trips(shaped, seq):
    n, state = shaped
    msg = wire.Snapshot(seq, tuple(f"n{i}" for i in range(n)), tuple(f"u{i}" for i in range(n)),
                        np.ones((n, 3)), np.full(n, 2.0), state)
    assert_same(wire.decode(wire.encode(msg)), msg)


def test_every_registered_message_round_trips():
    t = Task("t1", 1.5, 256.0, 0.0, 1000.0, command=("echo", "hi"), labels={"a": "b"})
    samples = [
        wire.Enqueue(t, "s0"), wire.EnqueueBatch((t, t), "s0"), wire.Probe("s0"), wire.ProbeReply("n0", np.arange(5.0)),
        wire.Reserve(t, "s0", "http://127.0.0.1:1/internal/confirm"), wire.Confirm("n0", "t1"),
        wire.Cancel("t1"), wire.CancelTask("t1", "by client"),
        wire.MoveOrder("n1", "http://127.0.0.1:5", "life-1", (1.0, 256.0, 0.0)),
        wire.MoveOrder("n1", "http://127.0.0.1:5", task_id="t1"),
        wire.Enqueue(t, "s0", "life-1", queued_ms=1234.5), wire.Deltas("s0", 3, ("n0", "n1"), np.ones((2, 5)), 8),
        wire.NodeState("n0", "http://127.0.0.1:2", 4, np.array([8.0, 1024.0, 0.0]), 2,
                       np.zeros(5), {"cpu": 0.25}),
        wire.Register("scheduler", "s0", "http://127.0.0.1:3"),
        wire.Register("scheduler", "s1", "http://127.0.0.1:4", wants_load=False),
        wire.NodeState("n0", "http://127.0.0.1:2", 5, np.array([8.0, 1024.0, 0.0]), 2,
                       np.zeros(5), incarnation="i1", task_ids=("t1", "t2")),
        wire.ReportAck(False),
        wire.ReportAck(True, fenced=True, lease_ms=3000.0, instance="store-1"),
        wire.Snapshot(9, ("n0",), ("http://127.0.0.1:2",), np.ones((1, 3)), np.ones(1),
                      np.zeros((1, 5)), "e1"),
        wire.Snapshot(9, (), (), np.ones((0, 3)), np.ones(0), np.zeros((0, 5)), dead=("n9",)),
        wire.SnapshotDelta(10, 9, "e1", ("n0",), np.ones((1, 5)), dead=("n9",)),
        wire.Lookup("s0/abc", ("t1", "t2"), claim=True),
        wire.LookupReply(("new", "placed"), ("", "n0"), ("s0/abc", "s1/def")),
        wire.TaskStatus("t1", "failed", "n0", 1.0, 2.0, 3.0, 137, "OOM killed"),
        wire.TaskStatuses((wire.TaskStatus("t1", "failed", "n0", 1.0, 2.0, 3.0, 137, "OOM"),
                           wire.TaskStatus("t2", "queued", "n0", 4.0)), missing=("t3",)),
        wire.TaskStatus("t1", "moved", "n0", 1.0, reason="moved to node n1", moved_to="n1"),
    ]
    assert {type(m).TYPE for m in samples} == set(wire_codec._REGISTRY)
    for msg in samples:
        assert_same(wire.decode(wire.encode(msg)), msg)


def test_fields_added_for_moves_are_left_out_at_their_default():
    """An enqueue or a status that does not use them encodes as before (sizes, and
    peers that predate the fields, stay as they were)."""
    t = Task("t1", 1.0, 256.0, 0.0, 1000.0)
    for msg, name in ((wire.Enqueue(t, "s0"), "queued_ms"),
                      (wire.TaskStatus("t1", "queued", "n0"), "moved_to")):
        body = msgpack.unpackb(wire.encode(msg), raw=False)["body"]
        assert name not in body
        assert wire.decode(wire.encode(msg)) == msg
    body = msgpack.unpackb(wire.encode(wire.Enqueue(t, "s0", queued_ms=5.0)), raw=False)["body"]
    assert body["queued_ms"] == 5.0
    nested = wire.TaskStatuses((wire.TaskStatus("t1", "moved", "n0", moved_to="n1"),
                                wire.TaskStatus("t2", "queued", "n0")))
    assert wire.decode(wire.encode(nested)) == nested


def test_a_move_order_room_must_be_numbers():
    bad = _envelope({"target_node": "n1", "target_url": "u", "room": ["1", 2.0]}, kind="move")
    with pytest.raises(DecodeError, match="move.room: expected a list of numbers"):
        wire.decode(bad)


def _envelope(body, kind="cancel", v=wire.SCHEMA_VERSION):
    return msgpack.packb({"v": v, "type": kind, "body": body}, use_bin_type=True)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "malformed"),
        (b"\xc1", "malformed"),
        (b"\x93\x01", "malformed"),
        (msgpack.packb([1, 2, 3]), "expected a map"),
        (_envelope({"task_id": "t"}, v=99), "schema version 99"),
        (_envelope({"task_id": "t"}, kind="nope"), "unknown message type"),
        (_envelope({}), "missing field 'task_id'"),
        (_envelope({"task_id": 5}), "expected str"),
        (_envelope({"task_id": "t", "x": 1}), "unknown field 'x'"),
        (_envelope({"node_id": "n", "state": [[5], b"\x00" * 7]}, "probe_reply"), "do not match"),
        (_envelope({"node_id": "n", "state": "nope"}, "probe_reply"), "[shape, float64 bytes]"),
        (_envelope({"statuses": [5]}, "task_statuses"), "list of task_status maps"),
        (_envelope({"statuses": [{"task_id": "t"}]}, "task_statuses"), "missing field 'state'"),
        (_envelope({"task": {"id": "t", "cores": -1, "memory_mb": 1}, "scheduler_id": "s"},
                   "enqueue"), "cores: must be > 0"),
        (_envelope({"task": {"id": "t", "cores": float("nan"), "memory_mb": 1},
                    "scheduler_id": "s"}, "enqueue"), "must be finite"),
    ],
)
def test_bad_input_raises_decode_error_naming_the_problem(data, fragment):
    with pytest.raises(DecodeError) as info:
        wire.decode(data)
    assert fragment in str(info.value)


def test_decode_can_insist_on_a_type():
    with pytest.raises(DecodeError, match="expected 'snapshot', got 'cancel'"):
        wire.decode(wire.encode(wire.Cancel("t")), wire.Snapshot)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_another_exception(data):
    try:
        wire.decode(data)
    except DecodeError:
        pass


@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | finite | st.text(max_size=5)
                    | st.binary(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c,
                                                                        max_size=3),
                    max_leaves=20),
       st.sampled_from(sorted(wire_codec._REGISTRY)))
def test_arbitrary_bodies_never_escape_as_another_exception(body, kind):
    try:
        wire.decode(_envelope(body, kind))
    except DecodeError:
        pass


def test_every_registered_message_is_named_by_dodoor_wire():
    """A message defined in a wire_* module but not re-exported is caught here."""
    for name, cls in wire_codec._REGISTRY.items():
        assert getattr(wire, cls.__name__) is cls, name
        assert cls.__name__ in wire.__all__, name
