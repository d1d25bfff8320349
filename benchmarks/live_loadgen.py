"""The load generator of ``live_throughput.py``, run in its own process
(``live_throughput.py loadgen ARGS``): closed-loop or open-loop submissions, batched
msgpack or single JSON, and the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

TASK = {"cores": 0.01, "memory_mb": 1, "duration_ms": 1}


async def _loadgen(a: argparse.Namespace) -> dict:
    import aiohttp
    import msgpack

    url = a.url + "/v1/tasks"
    connector = aiohttp.TCPConnector(limit=a.concurrency)
    placed = 0
    errors = 0
    latencies: list[float] = []
    by_ids: dict[str, list[float]] = {"client": [], "server": []}
    cpu_start = time.process_time()
    counter = iter(range(10**12))
    run_id = os.urandom(4).hex()
    async with aiohttp.ClientSession(connector=connector) as session:
        async def submit(n: int) -> None:
            nonlocal placed, errors
            seq = next(counter)
            # alternate: every other request leaves the ids to the scheduler
            named = a.ids == "client" or (a.ids == "alternate" and seq % 2 == 0)
            tasks = ([{**TASK, "id": f"{run_id}-{seq}-{j}"} for j in range(n)]
                     if named else [TASK] * n)
            if a.mode == "batch":
                data = msgpack.packb({"tasks": tasks})
                headers = {"Content-Type": "application/msgpack"}
            else:
                data = json.dumps(tasks[0]).encode()
                headers = {"Content-Type": "application/json"}
            t0 = time.perf_counter()
            if a.mode == "healthz":  # the control: one HTTP hop, no placement
                async with session.get(a.url + "/healthz") as resp:
                    await resp.read()
                    placed += 1
                    latencies.append(time.perf_counter() - t0)
                return
            async with session.post(url, data=data, headers=headers) as resp:
                await resp.read()
                if resp.status == 202:
                    placed += n
                    latencies.append(time.perf_counter() - t0)
                    by_ids["client" if named else "server"].append(latencies[-1])
                else:
                    errors += 1

        n = a.batch if a.mode == "batch" else 1
        start = time.perf_counter()
        end = start + a.seconds
        if a.rate:  # open loop: a request every 1/rate seconds
            pending: set[asyncio.Task] = set()
            i = 0
            while True:
                due = start + i / a.rate
                if due >= end:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(submit(n))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            await asyncio.gather(*pending)
        else:
            async def worker() -> None:
                while time.perf_counter() < end:
                    await submit(n)

            await asyncio.gather(*(worker() for _ in range(a.concurrency)))
        elapsed = time.perf_counter() - start
    def q(p: float, xs: list[float] = latencies) -> float:
        xs.sort()
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000.0 if xs else float("nan")

    return {"placed": placed, "errors": errors, "seconds": elapsed,
            "tasks_per_s": placed / elapsed, "p50_ms": q(0.50), "p99_ms": q(0.99),
            "cpu_s": time.process_time() - cpu_start,
            "by_ids": {k: {"n": len(xs), "p50_ms": q(0.50, xs), "p99_ms": q(0.99, xs)}
                       for k, xs in by_ids.items() if xs}}


def loadgen_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--mode", choices=("batch", "single", "healthz"), default="batch")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=0.0, help="open-loop requests/s (0: closed)")
    p.add_argument("--ids", choices=("client", "server", "alternate"), default="client",
                   help="server: send no ids, the scheduler makes them; alternate: every "
                        "other request (latencies reported apart)")
    a = p.parse_args(argv)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_loadgen(a))))
