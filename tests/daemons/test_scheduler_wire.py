"""The batched enqueue message the scheduler adds to dodoor/wire.py."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dodoor.errors import DecodeError
from dodoor.validation import parse_task
from dodoor.wire import EnqueueBatch, decode, encode

tasks = st.builds(
    lambda i, cores, mem, dur: parse_task({"id": f"t{i}", "cores": cores, "memory_mb": mem,
                                           "duration_ms": dur}),
    st.integers(0, 10**6), st.floats(0.001, 64), st.integers(1, 10**6), st.floats(0.1, 1e7),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(tasks, min_size=1, max_size=20))
def test_enqueue_batch_round_trips(batch):
    msg = EnqueueBatch(tuple(batch), "sched-0")
    assert decode(encode(msg), EnqueueBatch) == msg


@pytest.mark.parametrize("body, where", [
    ({"ids": ["a", "b"], "demands": np.array([[1, 1, 0, 5], [-1, 1, 0, 5]], "<f8").tobytes(),
      "scheduler_id": "s"}, "enqueue_batch.tasks[1].cores"),
    ({"ids": {"id": "a"}, "demands": b"", "scheduler_id": "s"}, "enqueue_batch.tasks.ids"),
    ({"ids": [], "demands": b"", "scheduler_id": 3}, "enqueue_batch.scheduler_id"),
])
def test_enqueue_batch_rejects_bad_bodies(body, where):
    data = msgpack.packb({"v": 1, "type": "enqueue_batch", "body": body})
    with pytest.raises(DecodeError, match=r"^" + where.replace("[", r"\[").replace("]", r"\]")):
        decode(data, EnqueueBatch)
