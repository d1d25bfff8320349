"""Soak: a local cluster driven at a fraction of its measured peak for minutes (prints figures).

1. Starts ``dodoor.tools.localcluster.LocalCluster`` (1 load store, 2 schedulers,
   6 sleep-executor agents on 127.0.0.1) in a temporary directory.
2. Calibrates: closed-loop batched submissions to every scheduler for
   ``--calibrate-s`` seconds; the placed tasks/s is the peak.
3. Soaks: an open loop at ``--fraction`` (0.7) of that peak for ``--minutes``,
   one batch every 100 ms, alternating schedulers; a line per minute.
4. Drains and accounts: the agents' ``dodoor_agent_tasks`` counters must add
   up to the placements (lost = placed - terminal on the agents, must be 0), and
   ``--sample`` random ids are read back through the schedulers.

Prints placements, errors, each process's RSS at start and end, and lost tasks;
exits 1 when a task was lost or a process died.

Usage: python benchmarks/soak.py [--minutes 10] [--fraction 0.7] [--agents 6]
       [--schedulers 2] [--calibrate-s 10] [--batch 50] [--duration-ms 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import msgpack
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dodoor.tools.localcluster import ClusterSettings, LocalCluster  # noqa: E402

TICK_S = 0.1


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(agents: int, rng: random.Random) -> int:
    """A base port whose load-store, scheduler and agent offsets are all free."""
    for _ in range(200):
        base = rng.randrange(20_000, 40_000)
        ports = [base, *(base + 10 + i for i in range(10)), *(base + 100 + i for i in range(agents))]
        if all(port_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range found")


def rss_mib(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = psutil.Process(pid).memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            out[name] = float("nan")
    return out


class Driver:
    """Submits batches and keeps the tally."""

    def __init__(self, session: aiohttp.ClientSession, urls: list[str], args: argparse.Namespace):
        self.session = session
        self.urls = urls
        self.args = args
        self.next_id = 0
        self.placed: list[str] = []
        self.errors: Counter[str] = Counter()
        self._turn = 0

    def _tasks(self, n: int) -> list[dict]:
        start = self.next_id
        self.next_id += n
        return [{"id": f"soak-{i}", "cores": 0.5, "memory_mb": 64,
                 "duration_ms": self.args.duration_ms} for i in range(start, start + n)]

    async def submit(self, n: int) -> None:
        url = self.urls[self._turn % len(self.urls)]
        self._turn += 1
        body = msgpack.packb({"tasks": self._tasks(n)}, use_bin_type=True)
        try:
            async with self.session.post(url + "/v1/tasks", data=body,
                                         headers={"Content-Type": "application/msgpack"}) as resp:
                answer = await resp.json(content_type=None)
                if resp.status != 202:
                    self.errors[f"http {resp.status}"] += 1
                # a 503 may still carry the tasks that were placed
                self.placed.extend(p["id"] for p in answer.get("placements", ())
                                   if p.get("node"))
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            self.errors[type(exc).__name__] += 1


async def calibrate(driver: Driver, seconds: float, concurrency: int) -> float:
    before = len(driver.placed)
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            await driver.submit(driver.args.batch)

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (len(driver.placed) - before) / (time.monotonic() - t0)


async def soak(driver: Driver, rate: float, seconds: float, pids: dict[str, int]) -> int:
    """Open loop at ``rate`` tasks/s; returns how many ticks found the previous one unfinished."""
    inflight: set[asyncio.Task] = set()
    late = 0
    carry = 0.0
    t0 = time.monotonic()
    next_report = 60.0
    tick = 0
    while (elapsed := time.monotonic() - t0) < seconds:
        carry += rate * TICK_S
        n, carry = int(carry), carry - int(carry)
        if len(inflight) >= 8:
            late += 1  # the cluster is behind; do not pile up unbounded requests
        elif n:
            task = asyncio.create_task(driver.submit(n))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        if elapsed >= next_report:
            rss = rss_mib(pids)
            print(f"  {elapsed / 60:4.1f} min: placed {len(driver.placed)}, errors "
                  f"{sum(driver.errors.values())}, RSS MiB max {max(rss.values()):.0f}", flush=True)
            next_report += 60.0
        tick += 1
        await asyncio.sleep(max(0.0, t0 + tick * TICK_S - time.monotonic()))
    await asyncio.gather(*inflight)
    return late


async def scrape_tasks(session: aiohttp.ClientSession, agent_urls: list[str]) -> tuple[Counter, float]:
    """Terminal tasks by state summed over agents, and the summed queue length."""
    ended: Counter[str] = Counter()
    queued = 0.0
    for url in agent_urls:
        async with session.get(url + "/metrics") as resp:
            text = await resp.text()
        for m in re.finditer(r'^dodoor_agent_tasks_total\{[^}]*state="(\w+)"[^}]*\} (\S+)$', text, re.M):
            ended[m.group(1)] += int(float(m.group(2)))
        for m in re.finditer(r"^dodoor_agent_(?:queue_length|running)\{[^}]*\} (\S+)$", text, re.M):
            queued += float(m.group(1))
    return ended, queued


async def run(args: argparse.Namespace, cluster: LocalCluster) -> int:
    pids = cluster.pids
    rss_start = rss_mib(pids)
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        driver = Driver(session, cluster.scheduler_urls, args)
        peak = await calibrate(driver, args.calibrate_s, concurrency=2 * len(cluster.scheduler_urls))
        rate = args.fraction * peak
        print(f"peak {peak:.0f} tasks/s (closed loop, batches of {args.batch}); soaking at "
              f"{rate:.0f} tasks/s ({args.fraction:.0%}) for {args.minutes:g} min", flush=True)
        calibrated = len(driver.placed)
        calib_errors = sum(driver.errors.values())
        t0 = time.monotonic()
        late = await soak(driver, rate, args.minutes * 60.0, pids)
        soak_s = time.monotonic() - t0
        soaked = len(driver.placed) - calibrated

        deadline = time.monotonic() + 120.0
        while True:  # drain: every placed task terminal on some agent
            ended, busy = await scrape_tasks(session, cluster.agent_urls)
            if (sum(ended.values()) >= len(driver.placed) and busy == 0) \
                    or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        rng = random.Random(args.seed)
        sample = rng.sample(driver.placed, min(args.sample, len(driver.placed)))
        sampled: Counter[str] = Counter()
        for i, tid in enumerate(sample):
            url = cluster.scheduler_urls[i % len(cluster.scheduler_urls)]
            async with session.get(f"{url}/v1/tasks/{tid}") as resp:
                body = await resp.json(content_type=None)
            # a scheduler only knows the ids it placed; ask the other one too
            if resp.status == 404:
                other = cluster.scheduler_urls[(i + 1) % len(cluster.scheduler_urls)]
                async with session.get(f"{other}/v1/tasks/{tid}") as resp:
                    body = await resp.json(content_type=None)
            sampled[body.get("state", f"http {resp.status}")] += 1
    rss_end = rss_mib(pids)
    alive = {name: psutil.pid_exists(pid) for name, pid in pids.items()}
    terminal = sum(ended.values())
    lost = len(driver.placed) - terminal
    print(f"placements: {len(driver.placed)} ({calibrated} calibrating, {soaked} soaking "
          f"= {soaked / soak_s:.0f}/s over {soak_s:.0f} s); late ticks {late}")
    print(f"errors: {calib_errors} while calibrating (overload), "
          f"{sum(driver.errors.values()) - calib_errors} while soaking; by kind {dict(driver.errors)}")
    print(f"agents' terminal tasks: {dict(ended)}; still queued/running {busy:g}")
    print(f"sampled {len(sample)} ids through the schedulers: {dict(sampled)}")
    print("RSS MiB start -> end:")
    for name in pids:
        print(f"  {name:12s} {rss_start[name]:7.1f} -> {rss_end[name]:7.1f}"
              f"{'' if alive[name] else '  (DIED)'}")
    print(f"lost tasks: {lost}")
    return 0 if lost == 0 and all(alive.values()) and sampled.get("succeeded", 0) == len(sample) \
        else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--fraction", type=float, default=0.7)
    p.add_argument("--agents", type=int, default=6)
    p.add_argument("--schedulers", type=int, default=2)
    p.add_argument("--calibrate-s", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--duration-ms", type=float, default=5.0)
    p.add_argument("--sample", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="dodoor-soak-") as tmp:
        settings = ClusterSettings(agents=args.agents, schedulers=args.schedulers,
                                   executor="sleep", base_port=free_base_port(args.agents, rng),
                                   workdir=Path(tmp))
        with LocalCluster(settings) as cluster:
            code = asyncio.run(run(args, cluster))
    sys.exit(code)


if __name__ == "__main__":
    main()
