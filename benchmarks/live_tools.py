"""Helpers of ``live_throughput.py`` and ``vs_peers.py`` run in their own processes:
the null agent (``nullagent``), a profiled scheduler or agent (``profiled``) and the
Dask and Ray comparisons (``dask``, ``ray``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# -- a null agent (its own process): accepts enqueues, runs nothing ---------

async def _null_agent(a: argparse.Namespace) -> None:
    import aiohttp
    import numpy as np
    from aiohttp import web

    from dodoor.wire import CONTENT_TYPE, Enqueue, EnqueueBatch, NodeState, decode, encode

    received = 0

    async def enqueue(request: web.Request) -> web.Response:
        nonlocal received
        decode(await request.read(), Enqueue)  # a real agent decodes and validates too
        received += 1
        return web.Response(status=202)

    async def enqueue_batch(request: web.Request) -> web.Response:
        nonlocal received
        received += len(decode(await request.read(), EnqueueBatch).tasks)
        return web.Response(status=202)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "received": received})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/internal/enqueue", enqueue)
    app.router.add_post("/internal/enqueue_batch", enqueue_batch)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", a.port).start()
    url = f"http://127.0.0.1:{a.port}"
    seq = 0
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():  # a heartbeat report keeps the node alive in the load store
            seq += 1
            msg = NodeState(a.id, url, seq, np.array([64.0, 262144.0, 0.0]), 64, np.zeros(5),
                            task_ids_complete=True)  # it keeps no ids
            try:
                async with session.post(a.loadstore + "/internal/node_state", data=encode(msg),
                                        headers={"Content-Type": CONTENT_TYPE}) as resp:
                    await resp.read()
            except aiohttp.ClientError:
                pass
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    await runner.cleanup()


def null_agent_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--loadstore", required=True)
    a = p.parse_args(argv)
    import uvloop
    uvloop.install()
    asyncio.run(_null_agent(a))


# -- a profiled scheduler: SIGUSR1 starts the profiler, SIGUSR2 writes it ----

def _handler_timing(out: str):
    """Time spent inside the scheduler's POST /v1/tasks handler and in GC pauses, per
    request, written as JSON quantiles: what of a client's latency is the scheduler's."""
    import gc

    import scheduler.app as sched_app

    handler: list[float] = []
    pauses: list[float] = []
    on = [False]
    gc_start = [0.0]
    submit = sched_app.submit

    async def timed(request):
        t0 = time.perf_counter()
        try:
            return await submit(request)
        finally:
            if on[0]:
                handler.append(time.perf_counter() - t0)

    def gc_cb(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        elif on[0]:
            pauses.append(time.perf_counter() - gc_start[0])

    sched_app.submit = timed  # create_app routes to the module's function at call time
    from dodoor.service.peers import PeerClient

    hops: list[float] = []
    post_raw = PeerClient.post_raw

    async def timed_post(self, url, data, expect=None):
        t0 = time.perf_counter()
        try:
            return await post_raw(self, url, data, expect)
        finally:
            if on[0] and "/internal/enqueue" in url:
                hops.append(time.perf_counter() - t0)

    PeerClient.post_raw = timed_post
    gc.callbacks.append(gc_cb)

    def q(xs: list[float], f: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(f * len(xs)))] * 1e3 if xs else float("nan")

    def start(*_: object) -> None:
        handler.clear()
        pauses.clear()
        hops.clear()
        on[0] = True

    def stop(*_: object) -> None:
        on[0] = False
        Path(out).write_text(json.dumps({
            "requests": len(handler), "handler_p50_ms": q(handler, 0.5),
            "handler_p99_ms": q(handler, 0.99), "handler_max_ms": q(handler, 1.0),
            "agent_requests": len(hops), "agent_p50_ms": q(hops, 0.5),
            "agent_p99_ms": q(hops, 0.99),
            "gc_pauses": len(pauses), "gc_max_ms": q(pauses, 1.0),
            "gc_total_ms": sum(pauses) * 1e3}))

    return start, stop


def profiled_main(argv: list[str]) -> None:
    """``profiled cprofile|pyinstrument OUT <dodoor args>``: run dodoor, profile on demand."""
    kind, out, rest = argv[0], argv[1], argv[2:]
    if kind == "timing":
        start, stop = _handler_timing(out)
    elif kind == "pyinstrument":
        from pyinstrument import Profiler
        prof = Profiler(interval=0.0005, async_mode="disabled")

        def start(*_: object) -> None:
            prof.start()

        def stop(*_: object) -> None:
            prof.stop()
            text = prof.output_html() if out.endswith(".html") else prof.output_text(
                unicode=False, color=False, show_all=False)
            Path(out).write_text(text)
    else:
        import cProfile
        prof = cProfile.Profile(time.process_time)  # CPU, not wall: the box is shared

        def start(*_: object) -> None:
            prof.enable()

        def stop(*_: object) -> None:
            prof.disable()
            prof.dump_stats(out)
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from dodoor.tools.cli import main as dodoor_main
    sys.exit(dodoor_main(rest))


# -- the comparison: Dask placing the same number of no-op tasks ------------

def dask_main(argv: list[str]) -> None:
    """``dask --tasks N --workers W``: a LocalCluster runs N no-op tasks with resource
    requests; prints JSON with tasks/s (submit of all to the last result)."""
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--memory-mb", type=float, default=1.0, help="each task's request")
    a = p.parse_args(argv)
    import logging

    from distributed import Client, LocalCluster, wait

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True,
                      resources={"cores": 64, "memory_mb": 262144}, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        noop = lambda i: i  # noqa: E731 - a lambda is pickled by value for the workers
        warm = client.map(noop, range(100), resources={"cores": 0.01, "memory_mb": a.memory_mb},
                          pure=False)
        wait(warm)
        start = time.perf_counter()
        futures = client.map(noop, range(a.tasks),
                             resources={"cores": 0.01, "memory_mb": a.memory_mb}, pure=False)
        wait(futures)
        elapsed = time.perf_counter() - start
        done = sum(1 for f in futures if f.status == "finished")
    print(json.dumps({"tasks": done, "seconds": elapsed, "tasks_per_s": done / elapsed}))


def ray_main(argv: list[str]) -> None:
    """``ray --tasks N --workers W``: Ray on this host (W CPUs) runs N no-op tasks with
    resource requests; prints JSON like :func:`dask_main` (submit of all to the last end)."""
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--memory-mb", type=float, default=1.0, help="each task's request")
    a = p.parse_args(argv)
    import logging

    import ray

    ray.init(num_cpus=a.workers, resources={"cores": 64, "memory_mb": 262144},
             include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        # one CPU per task, as Dask's one thread per worker: W run at a time
        noop = ray.remote(num_cpus=1, resources={"cores": 0.01, "memory_mb": a.memory_mb})(
            lambda i: i)
        ray.get([noop.remote(i) for i in range(100)])  # warm: workers started
        start = time.perf_counter()
        refs = [noop.remote(i) for i in range(a.tasks)]
        done = len(ray.get(refs))
        elapsed = time.perf_counter() - start
    finally:
        ray.shutdown()
    print(json.dumps({"tasks": done, "seconds": elapsed, "tasks_per_s": done / elapsed}))


# the helpers a benchmark script runs as ``SCRIPT NAME ARGS...`` in a child process
HELPERS = {"nullagent": null_agent_main, "dask": dask_main, "ray": ray_main,
           "profiled": profiled_main}


def compare_dask(a: argparse.Namespace, tasks: int, dodoor_rate: float) -> None:
    """Run the Dask comparison when distributed is importable; say so when it is not."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        print("comparison with Dask skipped: distributed is not installed "
              "(pip install -e '.[compare]')")
        return
    bench = str(Path(__file__).with_name("live_throughput.py"))
    out = subprocess.run([sys.executable, bench, "dask", "--tasks", str(tasks),
                          "--workers", str(a.dask_workers)], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        print(f"comparison with Dask failed: {out.stderr.strip()[-500:]}")
        return
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"Dask LocalCluster ({a.dask_workers} worker processes, 1 thread each, resources "
          f"cores/memory_mb): {res['tasks']} no-op tasks with resource requests in "
          f"{res['seconds']:.2f} s = {res['tasks_per_s']:,.0f} tasks/s (submit to done); "
          f"dodoor batched/Dask = {dodoor_rate / res['tasks_per_s']:.2f}x")
