"""The scheduler's answers to bad submissions (validation, malformed and oversized bodies,
fuzzed input), against fake agents and a real in-process load store."""

from __future__ import annotations

import json
import math

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dodoor.wire import CONTENT_TYPE
from tests.daemons.test_scheduler import TASK, Stack, make_stack  # noqa: F401


@pytest.mark.parametrize(
    "payload, status, field, reason",
    [
        ({**TASK, "cores": -1}, 400, "cores", "must be > 0, got -1"),
        ({**TASK, "cores": 0}, 400, "cores", "must be > 0, got 0"),
        ({**TASK, "memory_mb": 1.5}, 400, "memory_mb", "must be a whole number, got 1.5"),
        ({**TASK, "cores": "2"}, 400, "cores", "must be a number, got str"),
        ({**TASK, "cores": True}, 400, "cores", "must be a number, got bool"),
        ({**TASK, "bogus": 1}, 400, "bogus", "unknown field"),
        ({"memory_mb": 5}, 400, "cores", "is required"),
        ({"tasks": [TASK, TASK, {**TASK, "cores": -1}]}, 400, "tasks[2].cores",
         "must be > 0, got -1"),
        ({"tasks": [{**TASK, "id": "a"}, {**TASK, "id": "a"}]}, 400, "tasks[1].id",
         "duplicate id 'a' (also tasks[0].id)"),
        ({"tasks": [TASK, {**TASK, "priority": 7}]}, 400, "tasks[1].priority",
         "must be in 0..3, got 7"),
        ({"tasks": [{**TASK, "priority": "high"}]}, 400, "tasks[0].priority",
         "must be a number, got str"),
        ({"tasks": []}, 400, "tasks", "must not be empty"),
        ({"tasks": {}}, 400, "tasks", "must be a list, got dict"),
        ({"tasks": [TASK], "extra": 1}, 400, "extra", "unknown field"),
        ([1, 2], 400, "task", "must be an object, got list"),
        ({**TASK, "cores": 100}, 422, "cores", "requested 100 but the largest node has 8"),
        ({"tasks": [TASK, {**TASK, "memory_mb": 10**6}]}, 422, "tasks[1].memory_mb",
         "requested 1000000 but the largest node has 65536"),
    ],
)
async def test_validation_errors_name_the_field(make_stack, payload, status, field, reason):
    stack = await make_stack()
    got_status, body = await stack.post(payload)
    assert (got_status, body) == (status, {"error": {"field": field, "reason": reason}})
    got_status, body = await stack.post(payload, msgpack_body=True)
    assert (got_status, body["error"]["field"]) == (status, field)
    assert sum(a.enqueue_posts for a in stack.agents) == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_numbers_rejected(make_stack, literal):
    stack = await make_stack()
    data = '{"cores": %s, "memory_mb": 10}' % literal
    resp = await stack.client.post("/v1/tasks", data=data,
                                   headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "cores"
    resp = await stack.client.post("/v1/tasks", headers={"Content-Type": CONTENT_TYPE},
                                   data=msgpack.packb({"cores": 1, "memory_mb": 10,
                                                       "duration_ms": math.nan}))
    assert resp.status == 400
    assert await resp.json() == {"error": {"field": "duration_ms",
                                           "reason": "must be finite, got nan"}}


@pytest.mark.parametrize(
    "data, ctype, status, field",
    [
        (b'{"cores": 1,', "application/json", 400, "body"),
        (b"\xff\xfe", "application/json", 400, "body"),
        (b"\xc1", CONTENT_TYPE, 400, "body"),
        (msgpack.packb({1: 2}), CONTENT_TYPE, 400, "body"),
        (b"cores=1", "text/plain", 415, "content-type"),
        (b"", "application/json", 400, "body"),
    ],
)
async def test_malformed_bodies(make_stack, data, ctype, status, field):
    stack = await make_stack()
    resp = await stack.client.post("/v1/tasks", data=data, headers={"Content-Type": ctype})
    assert resp.status == status
    assert (await resp.json())["error"]["field"] == field


async def test_body_over_the_cap_is_413_json(make_stack):
    stack = await make_stack()
    big = json.dumps({"tasks": [TASK] * 200_000})
    assert len(big) > 8 * 1024 * 1024
    resp = await stack.client.post("/v1/tasks", data=big,
                                   headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"]["field"] == "body"


@pytest.fixture
def fuzz_stack(make_stack):
    """One stack reused across hypothesis examples (built on first use)."""
    built: list[Stack] = []

    async def get() -> Stack:
        if not built:
            built.append(await make_stack())
        return built[0]

    return get


VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "cores", "memory_mb", "duration_ms", "tasks", "env", "x"]), c,
        max_size=4),
    max_leaves=12)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200), VALUES.map(msgpack.packb),
                      VALUES.map(lambda v: json.dumps(v).encode())),
       path=st.sampled_from(["/v1/tasks", "/internal/snapshot", "/internal/confirm"]),
       ctype=st.sampled_from([CONTENT_TYPE, "application/json"]))
async def test_no_input_crashes_the_scheduler(fuzz_stack, data, path, ctype):
    stack = await fuzz_stack()
    resp = await stack.client.post(path, data=data, headers={"Content-Type": ctype})
    assert resp.status < 500 or resp.status == 503, await resp.text()
    if resp.status >= 400:
        assert "error" in await resp.json()
