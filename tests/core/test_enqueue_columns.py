"""EnqueueBatch travels as columns (docs/protocol.md): what the agent must still refuse."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dodoor import wire
from dodoor.errors import DecodeError, ValidationError
from dodoor.resources import Task, demand_matrix
from dodoor.validation import parse_task


def _decode(body):
    data = msgpack.packb({"v": wire.SCHEMA_VERSION, "type": "enqueue_batch", "body": body},
                         use_bin_type=True)
    return wire.decode(data, wire.EnqueueBatch)


def _body(ids, rows, **extra):
    return {"ids": ids, "demands": np.array(rows, dtype="<f8").tobytes(), "scheduler_id": "s",
            **extra}


def test_the_body_is_columns_and_rich_fields_only_where_set():
    plain = Task("a", 0.5, 64.0, 0.0, 10.0)
    rich = Task("b", 1.0, 128.0, 5.0, 20.0, image="img", command=("echo", "hi"),
                labels={"k": "v"}, priority=3)
    msg = wire.EnqueueBatch((plain, rich), "s0", "life-1")
    body = msgpack.unpackb(wire.encode(msg), raw=False)["body"]
    assert body["ids"] == ["a", "b"]
    assert np.frombuffer(body["demands"], "<f8").tolist() == [0.5, 64.0, 0.0, 10.0,
                                                             1.0, 128.0, 5.0, 20.0]
    assert body["runs"] == {"1": {"image": "img", "command": ["echo", "hi"],
                                  "labels": {"k": "v"}}}
    assert body["priorities"] == [plain.priority, 3]
    back = wire.decode(wire.encode(msg), wire.EnqueueBatch)
    assert back == msg
    plain_only = msgpack.unpackb(wire.encode(wire.EnqueueBatch((plain,), "s0")), raw=False)
    assert set(plain_only["body"]) == {"ids", "demands", "scheduler_id", "incarnation"}


@pytest.mark.parametrize("column, value, says", [
    (0, math.nan, "tasks[1].cores: must be finite, got nan"),
    (0, -1.0, "tasks[1].cores: must be > 0, got -1.0"),
    (0, 0.0, "tasks[1].cores: must be > 0, got 0.0"),
    (0, math.inf, "tasks[1].cores: must be finite, got inf"),
    (1, 0.0, "tasks[1].memory_mb: must be >= 1, got 0.0"),
    (1, 64.5, "tasks[1].memory_mb: must be a whole number, got 64.5"),
    (1, math.inf, "tasks[1].memory_mb: must be finite, got inf"),
    (2, math.inf, "tasks[1].disk_mb: must be finite, got inf"),
    (2, -1.0, "tasks[1].disk_mb: must be >= 0, got -1.0"),
    (2, math.nan, "tasks[1].disk_mb: must be finite, got nan"),
    (3, -5.0, "tasks[1].duration_ms: must be > 0, got -5.0"),
    (3, math.inf, "tasks[1].duration_ms: must be finite, got inf"),
])
def test_a_bad_demand_is_named(column, value, says):
    rows = [[1.0, 64.0, 0.0, 5.0], [1.0, 64.0, 0.0, 5.0], [math.nan] * 4]
    rows[1][column] = value
    # the first bad row is named, not the later one
    with pytest.raises(DecodeError, match=r"^enqueue_batch\." + says.replace("[", r"\[")
                       .replace("]", r"\]")):
        _decode(_body(["a", "b", "c"], rows))


@pytest.mark.parametrize("body, says", [
    (_body(["a", ""], [[1, 64, 0, 5]] * 2), r"tasks\[1\]\.id: must not be empty"),
    (_body(["a", "  "], [[1, 64, 0, 5]] * 2), r"tasks\[1\]\.id: must not be empty"),
    (_body(["a", 7], [[1, 64, 0, 5]] * 2), r"tasks\[1\]\.id: must be a string, got int"),
    (_body(["a", "x" * 300], [[1, 64, 0, 5]] * 2), r"tasks\[1\]\.id: longer than 256"),
    (_body(["a", "b"], [[1, 64, 0, 5]]), r"tasks\.demands: must be 2 rows"),
    ({**_body(["a"], [[1, 64, 0, 5]]), "demands": [1, 64, 0, 5]},
     r"tasks\.demands: must be 1 rows"),
    ({**_body(["a"], [[1, 64, 0, 5]]), "ids": "a"}, r"tasks\.ids: must be a list"),
    (_body(["a"], [[1, 64, 0, 5]], priorities=[99]), r"tasks\[0\]\.priority: must be in"),
    (_body(["a"], [[1, 64, 0, 5]], priorities=[1, 2]), r"tasks\.priorities: must be a list of 1"),
    (_body(["a"], [[1, 64, 0, 5]], runs={"1": {"image": "x"}}), r"tasks\.runs: '1' is not"),
    (_body(["a"], [[1, 64, 0, 5]], runs={"0": {"cores": 2}}), r"tasks\[0\]\.cores: unknown"),
    (_body(["a"], [[1, 64, 0, 5]], runs={"0": {"command": []}}),
     r"tasks\[0\]\.command: must not be empty"),
    (_body(["a"], [[1, 64, 0, 5]], tasks=[]), r"enqueue_batch\.tasks: unknown field"),
    ({"ids": ["a"], "scheduler_id": "s"}, r"enqueue_batch\.demands: missing field"),
    (_body(["a"], [[1, 64, 0, 5]], scheduler_id=3), r"scheduler_id: expected str, got int"),
    (_body(["a"], [[1, 64, 0, 5]], estimates_ms=["5"]), r"estimates_ms: expected a list"),
    (_body(["a"], [[1, 64, 0, 5]], estimates_ms=[math.nan]), r"enqueue_batch: .*got nan"),
])
def test_malformed_columns_are_a_decode_error(body, says):
    with pytest.raises(DecodeError, match=says):
        _decode(body)


def test_the_columns_accept_what_parse_task_accepts():
    # huge but finite whole demands are well formed (an agent then answers 422: too big)
    msg = _decode(_body(["a"], [[1e300, 1e300, 2.0**60, 1e300]]))
    assert msg.tasks == (parse_task({"id": "a", "cores": 1e300, "memory_mb": 1e300,
                                     "disk_mb": 2.0**60, "duration_ms": 1e300}),)


values = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -0.0, 0.0, 0.5, 1.0, 64.0,
                          64.5, 2.0**53, 2.0**53 + 2, 1e300])


@given(st.lists(values, min_size=4, max_size=4))
def test_columns_and_parse_task_agree_on_every_demand(row):
    fields = dict(zip(("cores", "memory_mb", "disk_mb", "duration_ms"), row))
    try:
        expected = (parse_task({"id": "a", **fields}, where="tasks[0]."),)
    except ValidationError as exc:
        with pytest.raises(DecodeError) as got:
            _decode(_body(["a"], [row]))
        assert str(got.value) == f"enqueue_batch.{exc.field}: {exc.reason}"
    else:
        assert _decode(_body(["a"], [row])).tasks == expected


def test_decoded_tasks_do_not_share_their_maps():
    msg = _decode(_body(["a", "b"], [[1, 64, 0, 5]] * 2))
    assert msg.tasks[0].env == {} and msg.tasks[0].env is not msg.tasks[1].env
    assert msg.tasks == (Task("a", 1.0, 64.0, 0.0, 5.0), Task("b", 1.0, 64.0, 0.0, 5.0))


def test_demand_matrix_rows_are_each_tasks_demand():
    tasks = [Task("a", 0.5, 64.0, 2.0), Task("b", 3.0, 128.0)]
    matrix = demand_matrix(tasks)
    assert matrix.dtype == np.float64
    assert matrix.tolist() == [t.demand().tolist() for t in tasks]
    assert demand_matrix([]).shape == (0, 3)
