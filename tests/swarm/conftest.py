"""Fixtures of the Swarm suite (``-m swarm``): a one-node swarm, the stack, a ledger.

* ``swarm`` — an active swarm manager: the engine's own, or one this suite creates
  (``docker swarm init`` on loopback) and leaves again at the end.
* ``stack`` — compose/docker-stack.yml with the one-node override (4 agents) and
  the gateway override, deployed under a unique name with its own token secret;
  removed, with its volumes and secret, at the end.

The daemons' image is built as ``dodoor:swarm-<source digest>`` (never
``dodoor:latest``, which other checkouts on the same engine rebuild) and the
stack references it by image ID: Swarm never tries to pull an image named by ID.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.container_events import StartLedger
from tests.docker.conftest import BUILD_SCRIPT, docker_client, images  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose"
STACK_FILES = ("docker-stack.yml", "docker-stack.local.yml", "docker-stack.gateway.yml")
AGENTS = 4


def docker(*args: str, check: bool = True, timeout: float = 120, input: str | None = None
           ) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          input=input, cwd=COMPOSE)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check: Callable[[], object], timeout: float, interval: float = 0.5,
             detail: Callable[[], str] = lambda: "") -> object:
    """Polls ``check`` until it returns something true; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s; last: {last!r}\n{detail()}")


@pytest.fixture(scope="session")
def swarm(docker_client) -> Iterator[str]:  # noqa: F811 - the imported fixture
    """An active swarm whose manager is this engine; left only if this fixture made it."""
    info = docker_client.info().get("Swarm", {})
    created = False
    had_gwbridge = bool(docker_client.networks.list(names=["docker_gwbridge"]))
    if info.get("LocalNodeState") != "active":
        # Loopback only: a one-node swarm needs no other address, and sends nothing out.
        proc = docker("swarm", "init", "--advertise-addr", "127.0.0.1",
                      "--listen-addr", "127.0.0.1:2377", check=False)
        if proc.returncode != 0:
            pytest.skip(f"cannot create a one-node swarm: {proc.stderr.strip()}")
        created = True
    elif not info.get("ControlAvailable"):
        pytest.skip("this engine is a swarm worker, not a manager: cannot deploy a stack")
    try:
        yield docker_client.info()["Swarm"]["NodeID"]
    finally:
        if created:
            docker("swarm", "leave", "--force", check=False)
            if not had_gwbridge:  # the bridge `swarm init` made; `leave` keeps it
                docker("network", "rm", "docker_gwbridge", check=False)


@pytest.fixture(scope="session")
def daemon_image(images) -> str:  # noqa: F811 - the imported fixture
    """The ID of ``dodoor:swarm-<digest>``, built from this checkout's sources."""
    digest = subprocess.run([str(BUILD_SCRIPT), "--source-digest"], capture_output=True,
                            text=True, check=True).stdout.strip()
    tag = f"dodoor:swarm-{digest}"
    env = dict(os.environ, DODOOR_APP_IMAGE=tag)
    build = subprocess.run([str(BUILD_SCRIPT), "--only", tag], capture_output=True, text=True,
                           env=env, timeout=900)
    assert build.returncode == 0, f"build-images.sh failed:\n{build.stdout}\n{build.stderr}"
    # Older builds of this suite (other digests) are dropped unless something uses them.
    for line in docker("images", "dodoor", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
        if line.startswith("dodoor:swarm-") and line != tag:
            docker("rmi", line, check=False)
    return docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()




@dataclass
class Stack:
    name: str
    token: str
    env: dict[str, str]
    entry_url: str        # the routing mesh's port, or the gateway's where IPVS is missing
    entry_kind: str       # "routing mesh" or "gateway"
    client: object
    removed: bool = field(default=False)

    @property
    def agent_service(self) -> str:
        return f"{self.name}_agent"

    def agent_id(self, slot: int) -> str:
        return f"{self.name}_agent-{slot}"

    def request(self, path: str, body: object | None = None, token: str | None = "default",
                timeout: float = 10) -> tuple[int, object]:
        """One request on a new connection, so the mesh picks a replica for each."""
        token = self.token if token == "default" else token
        headers = {"Content-Type": "application/json", "Connection": "close"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.entry_url + path, data=data, headers=headers,
                                     method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw or b"null")
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def healthz_id(self) -> str | None:
        status, body = self.request("/healthz", token=None, timeout=5)
        return body.get("id") if status == 200 and isinstance(body, dict) else None

    def node_ids(self) -> list[str]:
        status, body = self.request("/v1/nodes", timeout=5)
        assert status == 200, body
        return sorted(n["id"] for n in body["nodes"])

    def docker(self, *args: str, check: bool = True, timeout: float = 120
               ) -> subprocess.CompletedProcess:
        return docker(*args, check=check, timeout=timeout)

    def diagnostics(self) -> str:
        """What Swarm says about the stack's tasks, and the daemons' last log lines."""
        out = [self.docker("stack", "ps", "--no-trunc", self.name, "--format",
                           "{{.Name}} {{.CurrentState}} {{.Error}}", check=False).stdout]
        for service in ("loadstore", "scheduler", "agent", "gateway"):
            logs = self.docker("service", "logs", "--tail", "15", "--no-task-ids",
                               f"{self.name}_{service}", check=False, timeout=30)
            out.append(f"--- {service}\n{logs.stdout[-3000:]}{logs.stderr[-1000:]}")
        return "\n".join(out)

    def task_containers(self) -> list[dict]:
        """This stack's task containers (the agents' siblings), running or not."""
        return [c for c in self.client.api.containers(all=True, filters={"label": "dodoor.agent_id"})
                if c["Labels"].get("dodoor.agent_id", "").startswith(self.name + "_")]

    def stack_containers(self) -> list[dict]:
        return self.client.api.containers(
            all=True, filters={"label": f"com.docker.stack.namespace={self.name}"})

    def services(self) -> list[str]:
        return self.docker("service", "ls", "-q", "--filter",
                           f"label=com.docker.stack.namespace={self.name}").stdout.split()

    def ledger(self) -> StartLedger:
        return StartLedger(self.client, self.name + "_agent-")

    def remove(self) -> None:
        self.docker("stack", "rm", self.name, check=False)
        self.removed = True


def wait_ready(stack: Stack, agents: int, timeout: float = 240) -> None:
    """Every scheduler replica answers through the entry port and sees ``agents`` nodes."""
    seen: set[str] = set()

    def ready() -> bool:
        sid = stack.healthz_id()
        if sid is None:
            return False
        seen.add(sid)
        return len(seen) >= 2 and len(stack.node_ids()) == agents

    wait_for(f"the stack answering through its {stack.entry_kind} ({stack.entry_url}) with "
             f"2 scheduler replicas and {agents} agents (replicas seen: {seen})",
             ready, timeout, interval=0.5, detail=stack.diagnostics)


@pytest.fixture(scope="module")
def stack(swarm, daemon_image, docker_client) -> Iterator[Stack]:  # noqa: F811
    name = f"dds{uuid.uuid4().hex[:8]}"
    token = uuid.uuid4().hex
    secret = f"{name}_token"
    mesh_port, gateway_port = free_port(), free_port()
    env = dict(os.environ, DODOOR_IMAGE=daemon_image, DODOOR_TOKEN_SECRET=secret,
               DODOOR_SCHEDULER_PORT=str(mesh_port), DODOOR_GATEWAY_PORT=str(gateway_port),
               DODOOR_AGENTS=str(AGENTS), DODOOR_SLEEP_SCALE="1")
    env.pop("DODOOR_AGENT_ARGS", None)
    docker("secret", "create", secret, "-", input=token)
    files = [arg for f in STACK_FILES for arg in ("-c", f)]
    deploy = subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never", *files, name],
                            capture_output=True, text=True, cwd=COMPOSE, env=env, timeout=120)
    # The routing mesh needs the kernel's IPVS; without it the gateway stands in (docs/swarm.md).
    ipvs = Path("/proc/net/ip_vs").exists()
    port, kind = (mesh_port, "routing mesh") if ipvs else (gateway_port, "gateway")
    s = Stack(name, token, env, f"http://127.0.0.1:{port}", kind, docker_client)
    try:
        assert deploy.returncode == 0, f"stack deploy failed:\n{deploy.stdout}\n{deploy.stderr}"
        wait_ready(s, AGENTS)
        yield s
    finally:
        teardown(s, secret)


def teardown(s: Stack, secret: str) -> None:
    """Removes the stack, then what `docker stack rm` leaves: volumes, the secret."""
    s.remove()
    try:
        wait_for("the stack's containers gone", lambda: not s.stack_containers(), 90, interval=1)
    except AssertionError:
        for c in s.stack_containers():
            s.client.api.remove_container(c["Id"], force=True)
    for c in s.task_containers():
        s.client.api.remove_container(c["Id"], force=True)
    for volume in s.client.volumes.list(filters={"label": f"com.docker.stack.namespace={s.name}"}):
        try:
            volume.remove(force=True)
        except Exception:  # noqa: BLE001 - best effort; the next line reports it
            pass
    # the network goes once its last endpoint is gone; the secret once no service uses it
    wait_for("the stack's secret removed",
             lambda: docker("secret", "rm", secret, check=False).returncode == 0
             or not docker("secret", "ls", "-q", "--filter", f"name={secret}").stdout.strip(),
             30, interval=1)
