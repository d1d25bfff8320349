"""Hostile bodies against every POST endpoint of the three real daemons.

Each answer must be a 4xx whose JSON body names the problem
(``{"error": {"field", "reason"}}``); afterwards every process still serves,
still places and runs a task, and its RSS has stayed bounded.
"""

from __future__ import annotations

import json
import math
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dodoor.wire import CONTENT_TYPE, Cancel, Confirm, Enqueue, Lookup, Probe, Register, encode
from dodoor.validation import parse_task
from tests.faults.conftest import poll
from tests.hostile.conftest import Reply, raw_request

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TASK = {"id": "t", "cores": 1, "memory_mb": 64, "duration_ms": 5}
# (daemon, path, a valid body of the endpoint's message type, wire type name)
WIRE_ENDPOINTS = [
    ("agent", "/internal/enqueue", encode(Enqueue(parse_task(TASK), "s")), "enqueue"),
    ("agent", "/internal/enqueue_batch", None, "enqueue_batch"),
    ("agent", "/internal/probe", encode(Probe("s")), "probe"),
    ("agent", "/internal/reserve", None, "reserve"),
    ("agent", "/internal/cancel", encode(Cancel("t")), "cancel"),
    ("agent", "/internal/lookup", encode(Lookup("s", ("t",))), "lookup"),
    ("loadstore", "/internal/register", encode(Register("scheduler", "x", "http://127.0.0.1:1")),
     "register"),
    ("loadstore", "/internal/deltas", None, "deltas"),
    ("loadstore", "/internal/node_state", None, "node_state"),
    ("loadstore", "/internal/lookup", encode(Lookup("s", ("t",), claim=True)), "lookup"),
    ("scheduler", "/internal/snapshot", None, "snapshot"),
    ("scheduler", "/internal/snapshot_delta", None, "snapshot_delta"),
    ("scheduler", "/internal/confirm", encode(Confirm("node-h", "t")), "confirm"),
]
ALL_POSTS = [(d, p) for d, p, _, _ in WIRE_ENDPOINTS] + [("scheduler", "/v1/tasks")]


def envelope(kind: str, body, v=1) -> bytes:
    return msgpack.packb({"v": v, "type": kind, "body": body}, use_bin_type=True)


def assert_json_error(reply: Reply, *statuses: int, says: str | None = None) -> dict:
    assert 400 <= reply.status < 500, (reply.status, reply.body[:300])
    if statuses:
        assert reply.status in statuses, (reply.status, reply.body[:300])
    assert reply.content_type.startswith("application/json"), (reply.content_type, reply.body[:200])
    err = json.loads(reply.body)["error"]
    assert isinstance(err["field"], str) and err["field"]
    assert isinstance(err["reason"], str) and err["reason"]
    if says is not None:
        assert says in err["reason"] or says in err["field"], err
    return err


def post(trio, daemon: str, path: str, data: bytes, ctype: str = CONTENT_TYPE) -> Reply:
    return raw_request(getattr(trio, daemon).url + path, data, ctype, token=trio.token)


@pytest.fixture(scope="module")
def baseline(trio):
    return trio.rss()


# -- hand-picked ---------------------------------------------------------------
HOSTILE = {
    "empty": (b"", "malformed msgpack"),
    "truncated": (encode(Enqueue(parse_task(TASK), "s"))[:-4], "malformed msgpack"),
    "not msgpack": (b"\xc1\xc1\xc1", "malformed msgpack"),
    "deep nesting": (b"\x91" * 200_000 + b"\xc0", "malformed msgpack"),
    "array claiming 4G items": (b"\xdd\xff\xff\xff\xff", "malformed msgpack"),
    "map claiming 4G pairs": (b"\xdf\xff\xff\xff\xff", "malformed msgpack"),
    "str claiming 4 GB": (b"\xdb\xff\xff\xff\xff" + b"x" * 10, "malformed msgpack"),
    "scalar": (msgpack.packb(42), "expected a map"),
    "unknown version": (envelope("probe", {"scheduler_id": "s"}, v=2), "schema version 2"),
    "version as text": (envelope("probe", {"scheduler_id": "s"}, v="1"), "schema version"),
    "unknown type": (envelope("teleport", {}), "unknown message type"),
    "body a list": (envelope("probe", [1, 2]), None),  # or "expected <type>" off /probe
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("daemon, path", [(d, p) for d, p, _, _ in WIRE_ENDPOINTS])
def test_malformed_wire_bodies_are_400_naming_the_problem(trio, baseline, daemon, path, name):
    data, says = HOSTILE[name]
    reply = post(trio, daemon, path, data)
    assert_json_error(reply, 400, says=says)


@pytest.mark.parametrize("daemon, path, valid, kind", WIRE_ENDPOINTS)
def test_wrong_message_type_and_wrong_field_types(trio, baseline, daemon, path, valid, kind):
    other = encode(Probe("s")) if kind != "probe" else encode(Cancel("t"))
    assert_json_error(post(trio, daemon, path, other), 400, says="expected")
    assert_json_error(post(trio, daemon, path, envelope(kind, {"bogus": [1, {"x": None}]})), 400)
    assert_json_error(post(trio, daemon, path, envelope(kind, {"seq": "one", "node_id": 5,
                                                              "task": [], "tasks": "x"})), 400)


@pytest.mark.parametrize("daemon, path", ALL_POSTS)
def test_ten_megabyte_body_is_refused(trio, baseline, daemon, path):
    ctype = "application/json" if path == "/v1/tasks" else CONTENT_TYPE
    # agent cap 4 MiB and scheduler cap 8 MiB: 413; the load store takes 64 MiB (snapshots
    # of big clusters) so it parses the 10 MB and refuses what it finds
    reply = post(trio, daemon, path, b"\x00" * (10 * 1024 * 1024), ctype)
    if daemon == "loadstore":
        assert_json_error(reply, 400)
    else:
        assert_json_error(reply, 413)


@pytest.mark.parametrize("daemon, path", ALL_POSTS)
def test_huge_real_array_is_refused(trio, baseline, daemon, path):
    big = list(range(300_000))  # ~1.4 MB of msgpack each: under every body cap
    if path == "/v1/tasks":
        data = msgpack.packb({"tasks": big})
        reply = post(trio, daemon, path, data)
        assert_json_error(reply, 400, says="at most")
        return
    kind = next(k for d, p, _, k in WIRE_ENDPOINTS if p == path)
    field = "task" if kind in ("enqueue", "reserve") else "ids" if kind == "enqueue_batch" \
        else "node_ids"
    reply = post(trio, daemon, path, envelope(kind, {field: big, "state": big}))
    assert_json_error(reply, 400)


BAD_DEMANDS = [("cores", math.nan), ("cores", math.inf), ("cores", -1.0), ("cores", 0.0),
               ("memory_mb", -64), ("memory_mb", math.inf), ("duration_ms", math.nan),
               ("duration_ms", -5.0), ("disk_mb", -1), ("cores", 1e300)]


@pytest.mark.parametrize("field, value", BAD_DEMANDS)
def test_bad_demands_are_refused_everywhere(trio, baseline, field, value):
    task = {**TASK, field: value}
    # the scheduler, as JSON (NaN/Infinity literals) and as msgpack
    body = json.dumps(task).encode()
    assert_json_error(post(trio, "scheduler", "/v1/tasks", body, "application/json"), 400, 422,
                      says=field)
    assert_json_error(post(trio, "scheduler", "/v1/tasks", msgpack.packb({"tasks": [task]})),
                      400, 422, says=field)
    # the agent, inside a well-formed envelope
    for kind, path, msg in (
            ("enqueue", "/internal/enqueue", {"task": task, "scheduler_id": "s"}),
            ("enqueue_batch", "/internal/enqueue_batch", {"ids": ["x"], "scheduler_id": "s",
                                                          "demands": _demands(task)}),
            ("reserve", "/internal/reserve", {"task": task, "scheduler_id": "s",
                                              "reply_url": "http://127.0.0.1:1/internal/confirm"})):
        assert_json_error(post(trio, "agent", path, envelope(kind, msg)), 400, 422, says=field)


def _demands(task: dict) -> bytes:
    """A batch's demand column (dodoor.validation.DEMAND_COLUMNS) of one task."""
    return struct.pack("<4d", task["cores"], task["memory_mb"], task.get("disk_mb", 0),
                       task.get("duration_ms", 1000.0))


def test_batch_level_hostility_on_submission(trio, baseline):
    dup = {"tasks": [{**TASK, "id": "d"}, {**TASK, "id": "d"}]}
    assert_json_error(post(trio, "scheduler", "/v1/tasks", json.dumps(dup).encode(),
                           "application/json"), 400, says="duplicate id 'd'")
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    assert_json_error(post(trio, "scheduler", "/v1/tasks", deep, "application/json"), 400)
    assert_json_error(post(trio, "scheduler", "/v1/tasks", b'{"tasks": [', "application/json"),
                      400, says="malformed JSON")
    assert_json_error(post(trio, "scheduler", "/v1/tasks", b"\xff\xfe", "application/json"), 400)
    assert_json_error(post(trio, "scheduler", "/v1/tasks", b"{}", "text/xml"), 415)
    assert_json_error(post(trio, "scheduler", "/v1/tasks", json.dumps(
        {**TASK, "id": ""}).encode(), "application/json"), 400, says="id")
    assert_json_error(post(trio, "scheduler", "/v1/tasks", json.dumps(
        {**TASK, "id": 7}).encode(), "application/json"), 400, says="id")


@pytest.mark.parametrize("task_id", ["\u00e9t\u00e9-\U0001f600", "\u202e\u0000nul", "\ud800",
                                     "x" * 5000, "../../etc/passwd", "a/b?c#d%00"])
def test_unicode_and_odd_ids_are_placed_or_refused_cleanly(trio, baseline, task_id):
    body = json.dumps({**TASK, "id": task_id}).encode()
    reply = post(trio, "scheduler", "/v1/tasks", body, "application/json")
    if reply.status == 202:
        placed = json.loads(reply.body)["placements"][0]
        assert placed["id"] == task_id and placed["node"] == "node-h"
    else:
        assert_json_error(reply, 400, says="id")


def test_get_endpoints_with_odd_ids_and_unknown_routes(trio, baseline):
    for d in trio.daemons:
        assert_json_error(raw_request(d.url + "/no/such/path", None), 404)
        assert_json_error(raw_request(d.url + "/healthz", b"x", CONTENT_TYPE), 405)
    for d in (trio.agent, trio.scheduler):
        for odd in ("%F0%9F%98%80", "%00", "a" * 3000, "..%2F..%2Fx"):
            assert_json_error(raw_request(f"{d.url}/v1/tasks/{odd}", None), 404)


# -- generated -----------------------------------------------------------------
VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(-2**63, 2**64 - 1)
    | st.text(max_size=6) | st.binary(max_size=24),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.sampled_from(["task", "tasks", "id", "cores", "memory_mb", "duration_ms",
                         "scheduler_id", "node_id", "task_id", "seq", "state", "node_ids",
                         "deltas", "capacity", "slots", "epoch", "base_seq", "x"]), c,
        max_size=5),
    max_leaves=16)
# register and node_state are left out of the structured bodies: a valid one could
# make the store push to, or the scheduler enqueue on, a made-up URL
STRUCTURED_KINDS = [k for _, _, _, k in WIRE_ENDPOINTS if k not in ("register", "node_state")]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(
    st.binary(max_size=300),
    st.builds(envelope, st.sampled_from(STRUCTURED_KINDS),
              st.dictionaries(st.sampled_from(["task", "tasks", "scheduler_id", "node_id",
                                               "task_id", "seq", "state", "node_ids", "deltas",
                                               "reply_url", "epoch"]), VALUES, max_size=5)),
    VALUES.map(lambda v: msgpack.packb(v, use_bin_type=True))),
    target=st.sampled_from(ALL_POSTS))
def test_generated_bodies_never_get_a_5xx(trio, baseline, data, target):
    daemon, path = target
    reply = post(trio, daemon, path, data)
    assert reply.status < 500 or (path == "/v1/tasks" and reply.status == 503), \
        (reply.status, reply.body[:300])
    if reply.status >= 400:
        assert_json_error(reply)


def test_everything_still_serves_and_memory_stayed_bounded(trio, baseline):
    """Runs last in this module: the processes survived everything above."""
    assert trio.all_healthy()
    after = trio.rss()
    for d, before, now in zip(trio.daemons, baseline, after):
        # 10 MB bodies and 3 MB arrays came and went; nothing of them may stay
        assert now - before < 64 * 1024 * 1024, (d.args[0], before, now)
    reply = post(trio, "scheduler", "/v1/tasks",
                 json.dumps({**TASK, "id": "survivor", "duration_ms": 10}).encode(),
                 "application/json")
    assert reply.status == 202, reply.body
    poll(lambda: json.loads(raw_request(trio.scheduler.url + "/v1/tasks/survivor", None).body)
         ["state"] == "succeeded", 15, what="a task runs after the abuse")
    print("RSS MiB before/after: " + ", ".join(
        f"{d.args[0]} {b / 2**20:.0f}/{a / 2**20:.0f}"
        for d, b, a in zip(trio.daemons, baseline, after)))
