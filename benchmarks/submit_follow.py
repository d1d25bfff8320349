"""Requests per task of ``dodoor submit`` (submit and follow), counted at the schedulers.

Starts a local cluster (``dodoor cluster up``'s processes: one load store,
``--schedulers`` schedulers, ``--agents`` sleep-executor agents on 127.0.0.1) and
puts a counting proxy on loopback in front of each scheduler. Then it runs
``python -m dodoor submit --count N`` as a process through the proxies, once per
source tree given (``--baseline-tree``, e.g. an export of another branch, then
this tree), and prints each run's requests by kind, per task, and the ratio of
the runs' follow requests.

Usage: python benchmarks/submit_follow.py [--tasks 2000] [--baseline-tree DIR]
  (a baseline tree: mkdir /tmp/main && git archive main | tar -x -C /tmp/main)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dodoor.tools.localcluster import ClusterSettings, LocalCluster  # noqa: E402

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def kind(method: str, path: str) -> str:
    """What a client-facing request is for."""
    if path == "/v1/tasks" and method == "POST":
        return "submit"
    if path == "/v1/tasks/status" or (method == "GET" and path.startswith("/v1/tasks/")):
        return "status"
    return "other"


async def start_proxy(target: str, counts: Counter, session: aiohttp.ClientSession
                      ) -> tuple[web.AppRunner, str]:
    """A proxy on a free loopback port that forwards to ``target`` and counts by kind."""

    async def forward(request: web.Request) -> web.Response:
        counts[kind(request.method, request.path)] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with session.request(request.method, target + request.path_qs,
                                   data=await request.read(), headers=headers) as resp:
            body = await resp.read()
            return web.Response(body=body, status=resp.status,
                                content_type=resp.content_type)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return runner, "http://127.0.0.1:%d" % sock.getsockname()[1]


async def run_submit(tree: Path, urls: list[str], tasks: int, duration_ms: float
                     ) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dodoor", "submit", "--url", ",".join(urls), "--count",
        str(tasks), "--duration-ms", str(duration_ms), "--cores", "0.1", "--memory-mb", "16",
        "--json", cwd=tree, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    lines = err.decode(errors="replace").strip().splitlines()
    return proc.returncode or 0, time.monotonic() - started, lines[-1] if lines else ""


async def measure(trees: list[Path], targets: list[str], tasks: int,
                  duration_ms: float) -> list[tuple[Path, Counter, float, int, str]]:
    out = []
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for tree in trees:
            counts: Counter = Counter()
            proxies = [await start_proxy(t, counts, session) for t in targets]
            try:
                rc, took, summary = await run_submit(tree, [u for _, u in proxies], tasks,
                                                     duration_ms)
            finally:
                for runner, _ in proxies:
                    await runner.cleanup()
            out.append((tree, counts, took, rc, summary))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--agents", type=int, default=6)
    ap.add_argument("--schedulers", type=int, default=2)
    ap.add_argument("--duration-ms", type=float, default=10.0)
    ap.add_argument("--base-port", type=int, default=18390)
    ap.add_argument("--baseline-tree", type=Path, action="append", default=[],
                    help="another source tree whose dodoor submit runs first (repeatable)")
    args = ap.parse_args(argv)
    if args.tasks < 1:
        ap.error(f"--tasks must be >= 1, got {args.tasks}")
    for tree in args.baseline_tree:
        if not (tree / "dodoor" / "__main__.py").is_file():
            ap.error(f"--baseline-tree {tree} holds no dodoor package")
    trees = [t.resolve() for t in args.baseline_tree] + [REPO]
    workdir = Path(tempfile.mkdtemp(prefix="dodoor-submit-follow-"))
    settings = ClusterSettings(agents=args.agents, schedulers=args.schedulers,
                               base_port=args.base_port, workdir=workdir)
    with LocalCluster(settings) as cluster:
        runs = asyncio.run(measure(trees, cluster.scheduler_urls, args.tasks, args.duration_ms))
    n = args.tasks
    print(f"tasks {n}  agents {args.agents}  schedulers {args.schedulers}  "
          f"duration {args.duration_ms} ms")
    for tree, counts, took, rc, summary in runs:
        print(f"{tree}: exit {rc} ({summary}) in {took:.1f} s; requests submit "
              f"{counts['submit']}, status {counts['status']}, other {counts['other']}; per "
              f"task {sum(counts.values()) / n:.4f} (following only {counts['status'] / n:.4f})")
    if len(runs) > 1:
        base, last = runs[0][1]["status"], runs[-1][1]["status"]
        print(f"follow requests, this tree / first baseline: {last / max(base, 1):.5f}")
    return 0 if all(rc == 0 for *_, rc, _ in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
