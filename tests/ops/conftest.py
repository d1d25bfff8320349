"""A small live cluster in-process for the operations tests, and promtool.

``cluster``: a load store, a scheduler and two sleep-executor agents on
loopback, all with a token. The scheduler runs on a ManualClock, so snapshot
ages are exact and move only when a test says so.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass

import aiohttp
import pytest

from dodoor.clock import ManualClock
from node_agent.app import create_app as create_agent
from node_agent.settings import AgentSettings
from scheduler.app import STATE, create_app as create_scheduler
from scheduler.loadstore.app import create_app as create_loadstore
from scheduler.settings import LoadStoreSettings, SchedulerSettings
from tests.daemons.conftest import free_port

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus provides it; "
    ".ci/run installs it)")
TOKEN = "metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TASK_S = 0.05  # each task's sleep


@dataclass
class Cluster:
    loadstore: str
    scheduler: str
    agents: list[str]
    scheduler_clock: ManualClock
    scheduler_app: object

    def urls(self) -> dict[str, str]:
        return {"loadstore": self.loadstore, "scheduler": self.scheduler,
                **{f"agent-{i}": url for i, url in enumerate(self.agents)}}


@pytest.fixture
async def cluster(aiohttp_server, tmp_path):
    ls_port, s_port = free_port(), free_port()
    ls_url, s_url = f"http://127.0.0.1:{ls_port}", f"http://127.0.0.1:{s_port}"
    await aiohttp_server(create_loadstore(LoadStoreSettings(b=4, token=TOKEN)),
                         host="127.0.0.1", port=ls_port)
    agents = []
    for i in range(2):
        port = free_port()
        settings = AgentSettings(node_id=f"node-{i}", port=port, loadstore_url=ls_url,
                                 advertise_url=f"http://127.0.0.1:{port}", cores=4.0,
                                 memory_mb=1024.0, slots=2, token=TOKEN,
                                 journal_path=str(tmp_path / f"agent-{i}.sqlite"))
        await aiohttp_server(create_agent(settings), host="127.0.0.1", port=port)
        agents.append(f"http://127.0.0.1:{port}")
    # the scheduler's clock stands still unless a test moves it: snapshot ages are exact
    clock = ManualClock(1_000_000.0)
    app = create_scheduler(SchedulerSettings(
        scheduler_id="sched-m", port=s_port, loadstore_url=ls_url, policy="dodoor", seed=1,
        token=TOKEN, loadstore_check_ms=100, register_retry_ms=50), clock=clock)
    await aiohttp_server(app, host="127.0.0.1", port=s_port)
    c = Cluster(ls_url, s_url, agents, clock, app)
    await until(lambda: app[STATE].view.n_nodes == 2)
    return c


async def until(predicate, timeout: float = 10.0) -> None:
    """Wait for ``predicate()`` to hold."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def get_text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url, headers=AUTH) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text()


async def run_tasks(c: Cluster, n: int, prefix: str) -> None:
    """Submit ``n`` tasks in one batch and wait until each has succeeded."""
    tasks = [{"id": f"{prefix}-{i}", "cores": 1, "memory_mb": 64, "duration_ms": TASK_S * 1000}
             for i in range(n)]
    async with aiohttp.ClientSession() as session:
        async with session.post(c.scheduler + "/v1/tasks", json={"tasks": tasks},
                                headers=AUTH) as resp:
            assert resp.status == 202, await resp.text()
        for task in tasks:
            for _ in range(500):
                async with session.get(f"{c.scheduler}/v1/tasks/{task['id']}",
                                       headers=AUTH) as resp:
                    if (await resp.json())["state"] == "succeeded":
                        break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"{task['id']} did not succeed")


async def scrape_all(c: Cluster) -> dict[str, str]:
    """Every component's ``/metrics`` text, by component name."""
    async with aiohttp.ClientSession() as session:
        return {name: await get_text(session, url + "/metrics") for name, url in c.urls().items()}
