"""End to end: the docker-compose cluster runs trace tasks in limited containers.

Each task's command checks, from inside its container, that the cgroup limits
equal what the task asked for, then sleeps for its (scaled) trace duration; a
task whose limits were wrong exits 11 or 12 and so cannot count as succeeded.
"""

from __future__ import annotations

import json
from collections import Counter
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from dodoor.resources import Task
from tests.container_events import StartLedger
from tests.docker.conftest import BUILD_SCRIPT
from workloads.dodoor_csv import bundled_trace, load_dodoor_csv

# The first test also builds the images (about 2.5 min from nothing): allow for it.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"
TOKEN = f"e2e-{uuid.uuid4().hex}"
AGENTS = [f"agent-{i}" for i in range(6)]

# Reads the container's own cgroup limits (v1 or v2), compares them with the
# expectation passed in the environment, then stands in for the task's work.
CHECK_LIMITS = r"""
if [ -f /sys/fs/cgroup/cpu.max ]; then
  read q p < /sys/fs/cgroup/cpu.max; m=$(cat /sys/fs/cgroup/memory.max)
else
  q=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); p=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)
  m=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
fi
[ "$m" = "$EXPECT_MEMORY_BYTES" ] || { echo "memory limit $m, expected $EXPECT_MEMORY_BYTES"; exit 11; }
[ "$((q * 1000 / p))" = "$EXPECT_MILLICORES" ] || { echo "cpu quota $q/$p, expected $EXPECT_MILLICORES"; exit 12; }
echo "limits ok: $EXPECT_MILLICORES millicores, $m bytes"
sleep "$SLEEP_S"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    project: str
    env: dict[str, str]
    scheduler_urls: list[str]
    prometheus_url: str = ""
    down_done: bool = field(default=False)

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        proc = subprocess.run(["docker-compose", "-p", self.project, *args], cwd=COMPOSE_DIR,
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed:\n{proc.stderr}")
        return proc.stdout

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "20", check=False)
        self.down_done = True


def request(url: str, body: object | None = None, timeout: float = 10) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_ready(cluster: Cluster, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            ready = True
            for url in cluster.scheduler_urls:
                status, body = request(url + "/v1/nodes", timeout=2)
                last = body
                ready &= status == 200 and len(body["nodes"]) == len(AGENTS)
            if ready:
                return
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"cluster not ready in {timeout} s; last answer: {last!r}\n"
                         + cluster.compose("logs", "--tail", "20", check=False))


@pytest.fixture(scope="module")
def cluster(images, docker_client) -> Iterator[Cluster]:
    # The daemons' image is rebuilt when the sources changed since it was built.
    build = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr
    project = f"dodoore2e{uuid.uuid4().hex[:8]}"
    ports = [free_port() for _ in range(4)]
    env = dict(os.environ, DODOOR_TOKEN=TOKEN, DODOOR_CLUSTER=project,
               DODOOR_LOADSTORE_PORT=str(ports[0]), DODOOR_SCHEDULER_1_PORT=str(ports[1]),
               DODOOR_SCHEDULER_2_PORT=str(ports[2]), DODOOR_PROMETHEUS_PORT=str(ports[3]))
    c = Cluster(project, env, [f"http://127.0.0.1:{p}" for p in ports[1:3]],
                f"http://127.0.0.1:{ports[3]}")
    try:
        c.compose("up", "-d")
        wait_ready(c)
        yield c
    finally:
        c.down()
        for container in docker_client.containers.list(
                all=True, sparse=True, filters={"label": f"com.docker.compose.project={project}"}):
            container.remove(force=True)
        for container in task_containers(docker_client, project):
            docker_client.api.remove_container(container["Id"], force=True)


def task_containers(client, project: str) -> list[dict]:
    """This cluster's task containers as the engine lists them (no per-container inspect,
    which would race with the agents removing finished ones)."""
    return [c for c in client.api.containers(all=True, filters={"label": "dodoor.agent_id"})
            if c["Labels"].get("dodoor.agent_id", "").startswith(project + "-")]


def trace_tasks(prefix: str, count: int, offset: int = 0, seconds_per_minute: float = 1.0
                ) -> list[dict]:
    """Tasks from the bundled Azure trace, shrunk to fit a small host.

    Cores ÷ 8 and memory ÷ 64 keep the trace's proportions; a trace minute
    becomes ``seconds_per_minute`` seconds of sleep.
    """
    rows: list[Task] = load_dodoor_csv(bundled_trace(), limit=offset + count)[offset:]
    tasks = []
    for row in rows:
        cores = max(0.05, round(row.cores / 8, 2))
        memory_mb = max(32, int(row.memory_mb // 64))
        sleep_s = min(4.0, max(0.2, row.duration_ms / 60_000 * seconds_per_minute))
        tasks.append({
            "id": f"{prefix}-{row.task_id}", "cores": cores, "memory_mb": memory_mb,
            "duration_ms": sleep_s * 1000, "command": ["sh", "-c", CHECK_LIMITS],
            "env": {"EXPECT_MEMORY_BYTES": str(memory_mb * 1024 * 1024),
                    "EXPECT_MILLICORES": str(int(round(cores * 1000))),
                    "SLEEP_S": f"{sleep_s:.2f}"},
        })
    return tasks


def submit(cluster: Cluster, tasks: list[dict], batch: int = 10) -> dict[str, str]:
    """Alternates batches between the two schedulers; returns task id → scheduler URL."""
    owner: dict[str, str] = {}
    for n, start in enumerate(range(0, len(tasks), batch)):
        url = cluster.scheduler_urls[n % len(cluster.scheduler_urls)]
        chunk = tasks[start:start + batch]
        status, body = request(url + "/v1/tasks", {"tasks": chunk})
        assert status == 202, body
        assert [p["id"] for p in body["placements"]] == [t["id"] for t in chunk]
        owner.update({t["id"]: url for t in chunk})
    return owner


def wait_terminal(owner: dict[str, str], timeout: float = 300) -> dict[str, dict]:
    """Polls until every task succeeded or failed; transient lost/503 answers are retried."""
    final: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(final) < len(owner) and time.monotonic() < deadline:
        for task_id, url in owner.items():
            if task_id in final:
                continue
            try:
                status, body = request(f"{url}/v1/tasks/{task_id}", timeout=5)
            except OSError:
                continue
            if status == 200 and body["state"] in ("succeeded", "failed"):
                final[task_id] = body
        time.sleep(0.5)
    missing = sorted(set(owner) - set(final))
    assert not missing, f"{len(missing)} task(s) never finished, e.g. {missing[:5]}"
    return final




def test_hundred_trace_tasks_run_in_limited_containers(cluster, docker_client):
    started = StartLedger(docker_client, cluster.project + "-")
    tasks = trace_tasks("e2e", 100)
    # A control whose expectation is deliberately wrong: the check must be able to fail.
    control = dict(tasks[0], id="e2e-control",
                   env=dict(tasks[0]["env"], EXPECT_MEMORY_BYTES="1"))
    owner = submit(cluster, tasks + [control])
    assert set(owner.values()) == set(cluster.scheduler_urls)
    final = wait_terminal(owner)
    starts = started.close()
    assert final["e2e-control"]["state"] == "failed"
    assert final["e2e-control"]["exit_code"] == 11
    bad = {t: b for t, b in final.items() if t != "e2e-control" and b["state"] != "succeeded"}
    assert not bad, f"{len(bad)} task(s) did not succeed: {list(bad.items())[:3]}"
    assert all(final[t["id"]]["exit_code"] == 0 for t in tasks)
    # Every task ran in a container of this cluster, and more than one agent took work.
    assert set(starts) == set(owner)
    assert set(starts.values()) == {1}
    assert len({b["node"] for b in final.values()}) >= 3
    assert task_containers(docker_client, cluster.project) == []


def prometheus_api(cluster: Cluster, path: str) -> object:
    """``data`` of a Prometheus HTTP API answer (Prometheus itself asks for no token)."""
    with urllib.request.urlopen(cluster.prometheus_url + "/api/v1/" + path, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def test_prometheus_scrapes_every_component_and_loads_the_rules(cluster):
    # After the trace above: every component scraped, with the cluster's token (without
    # it each would answer 401 and read down), and every rule evaluated without error.
    expected = {"dodoor-loadstore": 1, "dodoor-scheduler": 2, "dodoor-agent": 6,
                "prometheus": 1}
    deadline = time.monotonic() + 90
    while True:
        targets = prometheus_api(cluster, "targets?state=active")["activeTargets"]
        groups = prometheus_api(cluster, "rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        ready = (all(t["health"] == "up" for t in targets)
                 and rules and all(r["health"] == "ok" for r in rules))
        if ready or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert Counter(t["labels"]["job"] for t in targets) == expected
    down = {t["scrapeUrl"]: t["lastError"] for t in targets if t["health"] != "up"}
    assert not down, down
    assert {g["name"] for g in groups} == {"dodoor-recording", "dodoor-alerts"}
    assert {r["name"] for r in rules if r["type"] == "alerting"} == {
        "DodoorAgentDown", "DodoorLoadStoreUnreachable", "DodoorQueueGrowing",
        "DodoorSchedulerWithoutSnapshots"}
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError"))
                                                     for r in rules]
    # the data arrived: the trace's placements, and a recording rule over the agents
    placed = prometheus_api(cluster, "query?query=sum(dodoor_scheduler_placements_total)")
    assert float(placed["result"][0]["value"][1]) >= 101
    queued = prometheus_api(cluster, "query?query=dodoor:agent_queue_length:sum")
    assert len(queued["result"]) == 1
    firing = [a for a in prometheus_api(cluster, "alerts")["alerts"] if a["state"] == "firing"]
    assert not firing, firing


def test_killed_agent_loses_no_task(cluster, docker_client):
    tasks = trace_tasks("kill", 40, offset=100, seconds_per_minute=3.0)
    started = StartLedger(docker_client, cluster.project + "-")
    owner = submit(cluster, tasks)
    victim = "agent-5"  # four slots: the agent most likely to hold running and queued work
    victim_id = f"{cluster.project}-{victim}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = [c for c in task_containers(docker_client, cluster.project)
                   if c["Labels"]["dodoor.agent_id"] == victim_id and c["State"] == "running"]
        if running:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"{victim} never ran a task")
    in_flight = {c["Labels"]["dodoor.task_id"] for c in running}
    cluster.compose("kill", victim)
    time.sleep(2)
    cluster.compose("start", victim)
    final = wait_terminal(owner, timeout=300)
    starts = started.close()
    bad = {t: b for t, b in final.items() if b["state"] != "succeeded"}
    assert not bad, f"{len(bad)} task(s) did not succeed: {list(bad.items())[:3]}"
    # What ran during the kill kept running and was adopted by the restarted agent, not re-run.
    assert all(final[t]["node"] == victim_id for t in in_flight)
    assert all(starts[t] == 1 for t in in_flight), {t: starts[t] for t in in_flight}
    assert task_containers(docker_client, cluster.project) == []


def test_down_leaves_nothing(cluster, docker_client):
    # Down in the middle of work: agents stop and remove their task containers on SIGTERM.
    long = [dict(t, env=dict(t["env"], SLEEP_S="60")) for t in trace_tasks("down", 8, offset=200)]
    submit(cluster, long)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum(c["State"] == "running" for c in task_containers(docker_client, cluster.project)) >= 4:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the long tasks never started")
    cluster.down()
    left = docker_client.containers.list(
        all=True, sparse=True, filters={"label": f"com.docker.compose.project={cluster.project}"})
    assert left == []
    assert task_containers(docker_client, cluster.project) == []
    volumes = docker_client.volumes.list(
        filters={"label": f"com.docker.compose.project={cluster.project}"})
    assert volumes == []
