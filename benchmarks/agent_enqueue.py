"""Enqueue throughput of one real `dodoor agent` process (sleep executor, zero-length tasks).

Every task is journaled three times (accepted, started, finished) with
``synchronous=FULL``, so this measures the agent's bookkeeping and the journal's
group commit, not task execution. Prints accepted and completed tasks per
second for single enqueues and for ``EnqueueBatch`` requests, and their ratio.

    python benchmarks/agent_enqueue.py [--tasks 2000] [--clients 32] [--batch 16]

Only loopback addresses are used. Figures depend on the disk's fsync latency
and on what else the machine is doing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dodoor.resources import Task  # noqa: E402
from dodoor.wire import CONTENT_TYPE, Enqueue, EnqueueBatch, encode  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_once(tasks: int, clients: int, batch: int) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dodoor", "--log-level", "WARNING", "agent", "--port", str(port),
             "--loadstore", f"http://127.0.0.1:{free_port()}", "--cores", "64", "--memory-mb", "1000000",
             "--disk-mb", "0", "--slots", "64", "--sleep-scale", "0", "--journal", f"{tmp}/j.sqlite"],
            cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            return await _drive(f"http://127.0.0.1:{port}", tasks, clients, batch)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


async def _drive(base: str, tasks: int, clients: int, batch: int) -> dict[str, float]:
    all_tasks = [Task(f"t{i}", 0.5, 100.0, 0.0, 10.0) for i in range(tasks)]
    if batch > 1:
        path = "/internal/enqueue_batch"
        bodies = [encode(EnqueueBatch(tuple(all_tasks[i:i + batch]), "bench"))
                  for i in range(0, tasks, batch)]
    else:
        path = "/internal/enqueue"
        bodies = [encode(Enqueue(t, "bench")) for t in all_tasks]
    headers = {"Content-Type": CONTENT_TYPE}
    async with aiohttp.ClientSession() as http:
        await _wait_healthy(http, base)
        pending = list(reversed(bodies))
        latencies: list[float] = []

        async def client() -> None:
            while pending:
                body = pending.pop()
                t = time.perf_counter()
                async with http.post(base + path, data=body, headers=headers) as resp:
                    if resp.status != 202:
                        raise RuntimeError(f"enqueue answered {resp.status}: {await resp.text()}")
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        accepted = time.perf_counter() - t0
        while await _succeeded(http, base) < tasks:
            await asyncio.sleep(0.01)
        finished = time.perf_counter() - t0
    latencies.sort()
    return {"accepted_per_s": tasks / accepted, "finished_per_s": tasks / finished,
            "p50_ms": latencies[len(latencies) // 2] * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3}


async def _wait_healthy(http: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            async with http.get(base + "/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"agent at {base} never became healthy")


async def _succeeded(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(base + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith("dodoor_agent_tasks_total") and 'state="succeeded"' in line:
            return float(line.split()[-1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    single = asyncio.run(run_once(args.tasks, args.clients, 1))
    batched = asyncio.run(run_once(args.tasks, max(1, args.clients // 4), args.batch))
    for name, r in (("single enqueue", single), (f"EnqueueBatch of {args.batch}", batched)):
        print(f"{name:>20}: {r['accepted_per_s']:7.0f} tasks accepted/s, {r['finished_per_s']:7.0f} "
              f"tasks finished/s, request p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms")
    print(f"batched / single accepted ratio: {batched['accepted_per_s'] / single['accepted_per_s']:.2f}")


if __name__ == "__main__":
    main()
