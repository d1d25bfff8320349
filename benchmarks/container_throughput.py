"""Container throughput: how fast tasks go through Docker, and what share is scheduling.

Two measurements (needs a Docker engine and the images from compose/build-images.sh):

* **executor** — one agent's :class:`DockerExecutor` runs N trivial tasks
  (``true`` in dodoor-task:busybox) at several concurrencies; prints containers
  per second and the per-task split between create+start and wait+collect+remove.
  Then the same tasks through the warm pool (``--docker-warm-image``), at the
  same concurrencies, in the same run: tasks/s cold and warm side by side and
  their ratio (docs/docker.md).
* **cluster** (``--cluster``) — starts the docker-compose cluster under a fresh
  project name, submits N trivial tasks through both schedulers, and splits each
  task's end-to-end latency into scheduling (the POST's round trip: sampling,
  scoring, enqueue on the agent), queueing on the agent, and the container's
  life; prints tasks per second and the scheduler's share. Always torn down.

    python benchmarks/container_throughput.py --tasks 60 --concurrency 1,4,8 --cluster
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dodoor.resources import Task  # noqa: E402
from node_agent.docker_executor import DockerExecutor, DockerSettings  # noqa: E402

COMPOSE_DIR = REPO / "compose"


class TimedExecutor(DockerExecutor):
    """Records, per container, how long create+start took (the rest is wait+collect+remove)."""

    def __init__(self, settings: DockerSettings) -> None:
        super().__init__(settings)
        self.start_s: list[float] = []

    def _create_and_start(self, spec: dict[str, Any]) -> Any:
        t0 = time.perf_counter()
        container = super()._create_and_start(spec)
        self.start_s.append(time.perf_counter() - t0)
        return container


async def executor_run(tasks: int, concurrency: int, warm: bool = False) -> dict[str, float]:
    """``tasks`` tasks of ``true`` at ``concurrency``; ``warm``: through the warm pool
    (kept as large as the concurrency, as an agent would size it to its slots)."""
    executor = TimedExecutor(DockerSettings(
        agent_id=f"bench-{uuid.uuid4().hex[:8]}", warm_per_image=max(2, concurrency),
        warm_images=frozenset({"dodoor-task:busybox"}) if warm else frozenset()))
    gate = asyncio.Semaphore(concurrency)
    totals: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            result = await executor.run(Task(f"b{i}", 0.1, 16, duration_ms=1.0, command=("true",)))
            await executor.forget(f"b{i}")  # an agent removes the container once it journaled
            totals.append(time.perf_counter() - t0)
            if result.state != "succeeded":
                raise RuntimeError(f"task b{i} failed: {result}")

    # first-use costs out (for the pool: its containers' cold starts)
    await asyncio.gather(*(executor.run(Task(f"w{i}", 0.1, 16, command=("true",)))
                           for i in range(concurrency if warm else 1)))
    for i in range(concurrency if warm else 1):
        await executor.forget(f"w{i}")
    executor.start_s.clear()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(tasks)))
    wall = time.perf_counter() - t0
    created = executor.warm.created
    await executor.close()
    start = statistics.mean(executor.start_s) if executor.start_s else 0.0
    total = statistics.mean(totals)
    return {"concurrency": concurrency, "containers_per_s": tasks / wall,
            "task_ms": 1000 * total, "create_start_ms": 1000 * start,
            "start_share": start / total, "warm_created": created}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url: str, token: str, body: object | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def cluster_run(tasks: int) -> dict[str, float]:
    project = f"dodoorbench{uuid.uuid4().hex[:8]}"
    token = uuid.uuid4().hex
    ports = [free_port() for _ in range(3)]
    env = dict(os.environ, DODOOR_TOKEN=token, DODOOR_CLUSTER=project,
               DODOOR_LOADSTORE_PORT=str(ports[0]), DODOOR_SCHEDULER_1_PORT=str(ports[1]),
               DODOOR_SCHEDULER_2_PORT=str(ports[2]))
    urls = [f"http://127.0.0.1:{p}" for p in ports[1:]]

    def compose(*args: str) -> None:
        subprocess.run(["docker-compose", "-p", project, *args], cwd=COMPOSE_DIR, env=env,
                       check=True, capture_output=True, timeout=300)

    try:
        compose("up", "-d")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if all(http(u + "/v1/nodes", token)[1]["nodes"].__len__() == 6 for u in urls):
                    break
            except (OSError, TypeError, KeyError):
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("cluster not ready in 120 s")
        submitted: dict[str, tuple[str, float, float]] = {}
        t_begin = time.time()
        for i in range(tasks):
            url = urls[i % 2]
            task_id = f"t{i}"
            sent = time.time()
            status, body = http(url + "/v1/tasks", token, {
                "id": task_id, "cores": 0.1, "memory_mb": 16, "duration_ms": 1,
                "command": ["true"]})
            if status != 202:
                raise RuntimeError(f"submission of {task_id} answered {status}: {body}")
            submitted[task_id] = (url, sent, time.time())
        done: dict[str, dict] = {}
        deadline = time.monotonic() + 300
        while len(done) < tasks and time.monotonic() < deadline:
            for task_id, (url, _, _) in submitted.items():
                if task_id not in done:
                    status, body = http(f"{url}/v1/tasks/{task_id}", token)
                    if status == 200 and body["state"] in ("succeeded", "failed"):
                        done[task_id] = body
            time.sleep(0.2)
        if len(done) < tasks:
            raise RuntimeError(f"only {len(done)}/{tasks} tasks finished")
        failed = [t for t, b in done.items() if b["state"] != "succeeded"]
        if failed:
            raise RuntimeError(f"{len(failed)} tasks failed, e.g. {done[failed[0]]}")
        last_end = max(b["finished_ms"] for b in done.values()) / 1000
        sched, queue, container, total = [], [], [], []
        for task_id, (_, sent, placed) in submitted.items():
            b = done[task_id]
            sched.append(placed - sent)
            queue.append(b["started_ms"] / 1000 - b["queued_ms"] / 1000)
            container.append((b["finished_ms"] - b["started_ms"]) / 1000)
            total.append(b["finished_ms"] / 1000 - sent)
        return {"tasks": tasks, "tasks_per_s": tasks / (last_end - t_begin),
                "schedule_ms": 1000 * statistics.mean(sched),
                "queue_ms": 1000 * statistics.mean(queue),
                "container_ms": 1000 * statistics.mean(container),
                "latency_ms": 1000 * statistics.mean(total),
                "scheduler_share": statistics.mean(sched) / statistics.mean(total)}
    finally:
        subprocess.run(["docker-compose", "-p", project, "down", "-v", "-t", "10"],
                       cwd=COMPOSE_DIR, env=env, capture_output=True, timeout=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--concurrency", default="1,4,8",
                        help="comma-separated executor concurrencies")
    parser.add_argument("--cluster", action="store_true",
                        help="also measure the docker-compose cluster end to end")
    parser.add_argument("--warm-tasks", type=int, default=None,
                        help="tasks per warm run (default 10 x --tasks: warm runs are short)")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",")]
    warm_tasks = args.warm_tasks or 10 * args.tasks
    print(f"executor, cold: {args.tasks} containers of `true` per run")
    print(f"{'conc':>4} {'cont/s':>8} {'task ms':>8} {'create+start ms':>16} {'start share':>12}")
    cold = {}
    for c in levels:
        r = cold[c] = asyncio.run(executor_run(args.tasks, c))
        print(f"{c:>4} {r['containers_per_s']:>8.2f} {r['task_ms']:>8.0f} "
              f"{r['create_start_ms']:>16.0f} {r['start_share']:>12.2f}")
    print(f"\nexecutor, warm pool: {warm_tasks} tasks of `true` per run, same concurrencies")
    print(f"{'conc':>4} {'cold/s':>8} {'warm/s':>8} {'warm/cold':>10} {'warm task ms':>13}"
          f" {'cold starts':>12}")
    for c in levels:
        w = asyncio.run(executor_run(warm_tasks, c, warm=True))
        print(f"{c:>4} {cold[c]['containers_per_s']:>8.2f} {w['containers_per_s']:>8.2f} "
              f"{w['containers_per_s'] / cold[c]['containers_per_s']:>10.1f} "
              f"{w['task_ms']:>13.1f} {w['warm_created']:>12}")
    if args.cluster:
        r = cluster_run(args.tasks)
        print(f"\ncluster: {r['tasks']} tasks of `true` through 2 schedulers, 6 agents (10 slots)")
        print(f"  throughput      {r['tasks_per_s']:.2f} tasks/s")
        print(f"  mean latency    {r['latency_ms']:.0f} ms = scheduling {r['schedule_ms']:.1f} ms"
              f" + queue {r['queue_ms']:.0f} ms + container {r['container_ms']:.0f} ms (approx.)")
        print(f"  scheduler share {r['scheduler_share']:.3f} of task latency; container life /"
              f" scheduling = {r['container_ms'] / r['schedule_ms']:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
