"""What the packing fallback's live moves cost one window: probe, solve, move order.

Two real agents (sleep executor, their HTTP apps on loopback in this process) hold a
fragmented state: node-a runs a 6-core task with a 4-core class-0 task queued behind
it, node-b runs a 7-core task (8 cores, 2 slots each). A window of one 2-core class-2
task is decided, alternating in one process:

* ``moves``: the live fallback (``scheduler.fallback`` with ``probe_movable`` and
  ``AgentMoveOrders``): probe both nodes, solve with the queued task movable, send the
  move order and wait for it (the task is handed over to node-b); placed on node-a.
* ``no moves``: the same window given nothing to move; the solver proves no room.

Each round builds the state afresh (new ids) and clears it after. Wall time from the
task joining the window to its verdict; median over the rounds.

    python benchmarks/fallback_moves.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
from aiohttp import web  # noqa: E402

from dodoor.cache import N_STATE  # noqa: E402
from dodoor.messages import MessageCounter  # noqa: E402
from dodoor.packing import PackingSettings  # noqa: E402
from dodoor.resources import Task  # noqa: E402
from dodoor.service.http import BackgroundTasks  # noqa: E402
from dodoor.service.peers import PeerClient, PeerError  # noqa: E402
from dodoor.wire import CancelTask, Enqueue, Snapshot  # noqa: E402
from node_agent.app import create_app  # noqa: E402
from node_agent.settings import AgentSettings  # noqa: E402
from scheduler.fallback import FallbackStats, FallbackWindow, no_movable  # noqa: E402
from scheduler.fallback_moves import AgentMoveOrders, probe_movable  # noqa: E402
from scheduler.view import ClusterView  # noqa: E402

NODES = ("node-a", "node-b")


async def start_agent(node: str, folder: str) -> tuple[web.AppRunner, str]:
    settings = AgentSettings(node_id=node, cores=8.0, memory_mb=8192.0, disk_mb=1000.0,
                             slots=2, executor="sleep", journal_path=f"{folder}/{node}.sqlite")
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def view(urls: list[str]) -> ClusterView:
    """The scheduler's cached view of the fragmented state."""
    v = ClusterView("bench", k=100)
    state = np.zeros((2, N_STATE))
    state[:, 0] = (10.0, 7.0)
    state[:, 3] = (2.0, 1.0)
    v.apply(Snapshot(1, NODES, tuple(urls), np.tile([8.0, 8192.0, 1000.0], (2, 1)),
                     np.full(2, 2.0), state), 0.0)
    return v


async def one_round(peers: PeerClient, urls: list[str], r: int, moves: bool) -> tuple[float, str]:
    tasks = [(0, Task(f"fill-a-{r}", 6.0, 256.0, 0.0, 600_000.0)),
             (0, Task(f"low-{r}", 4.0, 256.0, 0.0, 600_000.0, priority=0)),
             (1, Task(f"fill-b-{r}", 7.0, 256.0, 0.0, 600_000.0))]
    for node, task in tasks:
        await peers.send(urls[node] + "/internal/enqueue", Enqueue(task, "bench"))
    await asyncio.sleep(0.05)  # the fills start
    stats = FallbackStats()
    async with BackgroundTasks() as bg:
        prober = ((lambda u, e, below: probe_movable(peers, "bench", u, e, below)) if moves
                  else no_movable)
        window = FallbackWindow(PackingSettings(time_limit_s=1.0), 0.0, view(urls), bg, stats,
                                AgentMoveOrders(peers, lambda url: "", stats), prober=prober)
        high = Task(f"high-{r}", 2.0, 256.0, 0.0, 1000.0, priority=2)
        t0 = time.perf_counter()
        verdict = await window.place(high, high.demand())
        wall = (time.perf_counter() - t0) * 1e3
    for node, task in tasks:  # clear: every id cancelled where it is now
        for url in urls:
            try:
                await peers.send(url + "/internal/cancel_task", CancelTask(task.task_id),
                                 kind="cancel_task")
            except PeerError:  # 404: not held there
                pass
    outcome = verdict.target[0] if verdict.target else "none"
    return wall, f"{outcome}, moves done {stats.moves_done}"


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        started = [await start_agent(node, folder) for node in NODES]
        urls = [url for _, url in started]
        try:
            async with aiohttp.ClientSession() as session:
                peers = PeerClient(session, MessageCounter(), 2000.0, {})
                await one_round(peers, urls, -1, True)  # the ortools import, connections
                walls: dict[bool, list[float]] = {True: [], False: []}
                seen: dict[bool, set[str]] = {True: set(), False: set()}
                for r in range(rounds):
                    for moves in (True, False):
                        wall, outcome = await one_round(peers, urls, 2 * r + moves, moves)
                        walls[moves].append(wall)
                        seen[moves].add(outcome)
        finally:
            for runner, _ in started:
                await runner.cleanup()
    on, off = statistics.median(walls[True]), statistics.median(walls[False])
    print(f"window of one high task, median over {rounds} rounds: with moves {on:.1f} ms "
          f"(max {max(walls[True]):.1f}; {sorted(seen[True])}), without {off:.1f} ms (max "
          f"{max(walls[False]):.1f}; {sorted(seen[False])}); with / without {on / off:.2f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(p.parse_args().rounds))
