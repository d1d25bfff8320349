"""Authentication against real processes started with ``DODOOR_TOKEN``, and the container sandbox."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dodoor.validation import parse_task
from dodoor.wire import (CONTENT_TYPE, Cancel, Confirm, Deltas, Enqueue, EnqueueBatch, Lookup,
                         NodeState, Probe, Register, Reserve, Snapshot, SnapshotDelta, encode)
from node_agent.docker_executor import DockerExecutor, DockerSettings, TaskSpecError
from tests.daemons.conftest import Daemon, free_port, http_json
from tests.faults.conftest import poll
from tests.hostile.conftest import raw_request

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TASK = parse_task({"id": "auth-t", "cores": 1, "memory_mb": 64, "duration_ms": 5})
EMPTY = np.zeros((0, 5))


def _bodies() -> dict[str, bytes]:
    return {
        "/v1/tasks": json.dumps({"cores": 1, "memory_mb": 64, "duration_ms": 5}).encode(),
        "/internal/enqueue": encode(Enqueue(TASK, "s")),
        "/internal/enqueue_batch": encode(EnqueueBatch((TASK,), "s")),
        "/internal/probe": encode(Probe("s")),
        "/internal/reserve": encode(Reserve(TASK, "s", "http://127.0.0.1:1/internal/confirm")),
        "/internal/cancel": encode(Cancel("auth-t")),
        "/internal/register": encode(Register("scheduler", "intruder", "http://127.0.0.1:1")),
        "/internal/deltas": encode(Deltas("s", 1, ("node-h",), np.ones((1, 5)), 1)),
        "/internal/node_state": encode(NodeState("intruder", "http://127.0.0.1:1", 1,
                                                 np.array([64.0, 1e6, 0.0]), 64, np.zeros(5))),
        "/internal/snapshot": encode(Snapshot(99, (), (), np.zeros((0, 3)), np.zeros(0), EMPTY)),
        "/internal/snapshot_delta": encode(SnapshotDelta(2, 1, "e", (), EMPTY)),
        "/internal/confirm": encode(Confirm("node-h", "auth-t")),
        "/internal/lookup": encode(Lookup("intruder", ("auth-t",), claim=True)),
    }


# every endpoint but /healthz, per component: (method, path)
PROTECTED = {
    "scheduler": [("POST", "/v1/tasks"), ("GET", "/v1/tasks/auth-t"), ("GET", "/v1/nodes"),
                  ("POST", "/internal/snapshot"), ("POST", "/internal/snapshot_delta"),
                  ("POST", "/internal/confirm"), ("GET", "/metrics")],
    "loadstore": [("POST", "/internal/register"), ("POST", "/internal/deltas"),
                  ("POST", "/internal/node_state"), ("POST", "/internal/lookup"),
                  ("GET", "/v1/nodes"), ("GET", "/metrics")],
    "agent": [("POST", "/internal/enqueue"), ("POST", "/internal/enqueue_batch"),
              ("POST", "/internal/probe"), ("POST", "/internal/reserve"),
              ("POST", "/internal/cancel"), ("POST", "/internal/lookup"),
              ("GET", "/v1/tasks/auth-t"), ("GET", "/v1/state"),
              ("GET", "/metrics")],
}
CASES = [(d, m, p) for d, eps in PROTECTED.items() for m, p in eps]
# (trailing blanks are not in the list: HTTP strips them from header values)
BAD_TOKENS = [None, "", "wrong", "HOSTILE-TEST-TOKEN", "hostile-test-tok", "hostile-test-tokenX",
              " hostile-test-token"]


def _send(daemon: Daemon, method: str, path: str, authorization: str | None,
          data: bytes | None = None):
    import urllib.error
    import urllib.request

    ctype = "application/json" if path == "/v1/tasks" else CONTENT_TYPE
    if method == "POST" and data is None:
        data = _bodies()[path]
    req = urllib.request.Request(daemon.url + path, data=data if method == "POST" else None,
                                 method=method)
    if method == "POST":
        req.add_header("Content-Type", ctype)
    if authorization is not None:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("daemon, method, path", CASES)
def test_every_endpoint_refuses_a_missing_or_wrong_token(token_trio, daemon, method, path):
    d = getattr(token_trio, daemon)
    for bad in BAD_TOKENS:
        header = None if bad is None else f"Bearer {bad}"
        status, body = _send(d, method, path, header)
        assert status == 401, (bad, status, body[:200])
        assert json.loads(body)["error"]["field"] == "authorization"
    # the token in another scheme, or bare, is no token either
    for header in ("hostile-test-token", "Basic hostile-test-token", "bearer hostile-test-token"):
        assert _send(d, method, path, header)[0] == 401


def test_unauthenticated_requests_change_nothing(token_trio):
    t = token_trio
    nodes_before = http_json(t.scheduler.url + "/v1/nodes", token=t.token)[1]
    # a 10 MB body without a token is refused before it is read (401, not 413)
    status, _ = _send(t.agent, "POST", "/internal/enqueue", None, b"\x00" * (10 * 1024 * 1024))
    assert status == 401
    for path in ("/internal/node_state", "/internal/register"):
        assert _send(t.loadstore, "POST", path, None)[0] == 401
    assert _send(t.scheduler, "POST", "/internal/snapshot", "Bearer wrong")[0] == 401
    assert _send(t.agent, "POST", "/internal/enqueue", None)[0] == 401
    # no intruder node, no emptied view, no task on the agent
    ls_nodes = http_json(t.loadstore.url + "/v1/nodes", token=t.token)[1]["nodes"]
    assert [n["id"] for n in ls_nodes] == ["node-h"]
    after = http_json(t.scheduler.url + "/v1/nodes", token=t.token)[1]
    assert [n["id"] for n in after["nodes"]] == [n["id"] for n in nodes_before["nodes"]]
    assert http_json(t.agent.url + "/v1/tasks/auth-t", token=t.token)[0] == 404
    assert http_json(t.scheduler.url + "/v1/tasks/auth-t", token=t.token)[0] == 404


def test_with_the_token_the_cluster_places_and_runs(token_trio):
    t = token_trio
    for d in t.daemons:
        assert raw_request(d.url + "/healthz", None).status == 200  # health stays open
    status, body = http_json(t.scheduler.url + "/v1/tasks",
                             {"id": "with-token", "cores": 1, "memory_mb": 64, "duration_ms": 5},
                             token=t.token)
    assert status == 202 and body["placements"][0]["node"] == "node-h"
    poll(lambda: http_json(t.scheduler.url + "/v1/tasks/with-token", token=t.token)[1]["state"]
         == "succeeded", 15, what="the task runs with auth on every hop")
    assert _send(t.agent, "POST", "/internal/probe", f"Bearer {t.token}")[0] == 200


def test_an_agent_with_the_wrong_token_never_joins(token_trio, tmp_path):
    port = free_port()
    rogue = Daemon(["agent", "--port", str(port), "--id", "rogue", "--loadstore",
                    token_trio.loadstore.url, "--cores", "64", "--memory-mb", "100000",
                    "--disk-mb", "0", "--slots", "64", "--journal", str(tmp_path / "r.sqlite"),
                    "--report-interval-ms", "50", "--heartbeat-ms", "100"],
                   port, {"DODOOR_TOKEN": "not-the-token"}, tmp_path / "rogue.log", cwd=tmp_path)
    try:
        rogue.wait_healthy()
        # its reports are refused, so it reads degraded and the store never lists it
        poll(lambda: http_json(rogue.url + "/healthz")[1]["loadstore_reachable"] is False, 10,
             what="rogue sees its reports refused")
        ls_nodes = http_json(token_trio.loadstore.url + "/v1/nodes", token=token_trio.token)[1]
        assert [n["id"] for n in ls_nodes["nodes"]] == ["node-h"]
    finally:
        rogue.stop()


def test_task_containers_get_no_socket_no_privileges_and_only_allowed_images():
    """The spec every task container is created with (no engine needed to build it)."""
    ex = DockerExecutor(DockerSettings(agent_id="node-s"), client=object())
    task = parse_task({"id": "c", "cores": 2, "memory_mb": 256, "duration_ms": 5,
                       "command": ["sh", "-c", "true"]})
    image, command = ex.image_and_command(task)
    spec = ex.container_spec(task, image, command)
    assert spec["privileged"] is False
    assert spec["cap_drop"] == ["ALL"]
    assert spec["security_opt"] == ["no-new-privileges"]
    assert spec["network_mode"] == "none"
    # no mounts of any kind, so never /var/run/docker.sock
    assert not {"volumes", "mounts", "binds", "devices", "volumes_from", "ipc_mode", "pid_mode",
                "userns_mode", "cap_add"} & set(spec)
    assert "docker.sock" not in json.dumps(spec)
    for hostile in ("docker:latest", "alpine", "../busybox", "busybox@sha256:" + "0" * 64):
        with pytest.raises(TaskSpecError, match="not allowed"):
            ex.image_and_command(parse_task({"id": "i", "cores": 1, "memory_mb": 64,
                                             "duration_ms": 5, "image": hostile}))
