"""dodoor.client against real ``python -m dodoor`` processes on loopback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dodoor.client import (ALL_COMPLETED, FIRST_COMPLETED, AsyncClient, Client, NoSchedulerError,
                           RequestError, TaskCancelled, TaskFailed, as_completed, rendezvous, wait)
from tests.faults.conftest import ProcCluster, poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
NOOP = {"cores": 1, "memory_mb": 64, "duration_ms": 50}


@pytest.fixture
def sleep_cluster(tmp_path):
    c = ProcCluster(tmp_path, agents=2, schedulers=2, slots=8)
    yield c
    c.stop()


@pytest.fixture
def proc_cluster(tmp_path):
    c = ProcCluster(tmp_path, agents=1, schedulers=2, slots=2, executor="process")
    yield c
    c.stop()


def urls(c: ProcCluster) -> list[str]:
    return [s.url for s in c.schedulers]


def test_submit_many_then_wait_and_as_completed_take_few_requests(sleep_cluster):
    with Client(urls(sleep_cluster), poll_interval=0.2) as client:
        one = client.submit(**NOOP)
        assert one.result(timeout=30)["state"] == "succeeded"
        handles = client.submit_many(dict(NOOP) for _ in range(300))
        assert len({h.id for h in handles}) == 300
        before = client.requests
        done, not_done = wait(handles, timeout=60, return_when=ALL_COMPLETED)
        assert len(done) == 300 and not not_done
        assert {h.last["state"] for h in done} == {"succeeded"}
        # batch status with a long poll: far fewer requests than tasks
        assert client.requests - before < 60
        more = client.submit_many([dict(NOOP, id=f"ac-{i}") for i in range(20)])
        assert [h.id for h in more][:2] == ["ac-0", "ac-1"]
        seen = [h.id for h in as_completed(more, timeout=60)]
        assert sorted(seen) == sorted(h.id for h in more)
        # any scheduler answers for any id: a handle made from a bare id
        assert client.status("ac-3")["state"] == "succeeded"


def test_failed_and_cancelled_raise_their_errors_and_logs_are_read(proc_cluster):
    with Client(urls(proc_cluster)) as client:
        bad = client.submit(cores=1, memory_mb=64, duration_ms=100,
                            command=[sys.executable, "-c", "print('oops'); raise SystemExit(3)"])
        with pytest.raises(TaskFailed) as err:
            bad.result(timeout=30)
        assert err.value.status["exit_code"] == 3
        assert "oops" in client.logs(bad)
        long = client.submit(cores=1, memory_mb=64, duration_ms=60_000,
                             command=[sys.executable, "-c", "import time; time.sleep(60)"])
        poll(lambda: long.status()["state"] == "running", 20, what="long task running")
        done, not_done = client.wait([long], timeout=0.5, return_when=FIRST_COMPLETED)
        assert not done and not_done == {long}
        assert client.cancel(long) is True
        assert client.cancel(long.id) is True  # idempotent
        with pytest.raises(TaskCancelled):
            long.result(timeout=10)
        assert client.cancel(bad) is False  # already ended failed
        with pytest.raises(RequestError) as err:
            client.cancel("no-such-task")
        assert err.value.status == 404


def test_an_unreachable_scheduler_is_skipped_and_none_reachable_is_a_clear_error(sleep_cluster):
    c = sleep_cluster
    order = rendezvous(urls(c), "skip-me")
    first = next(s for s in c.schedulers if s.url == order[0])
    c.kill(first)
    with Client(urls(c), timeout=2.0) as client:
        h = client.submit(id="skip-me", **NOOP)
        assert h.result(timeout=30)["state"] == "succeeded"
    dead = [f"http://127.0.0.1:{_closed_port()}" for _ in range(2)]
    with Client(dead, timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(NoSchedulerError) as err:
            client.submit(**NOOP)
        assert time.monotonic() - started < 5
        assert all(u in str(err.value) for u in dead)


def test_a_lost_task_is_resubmitted_with_the_same_id(tmp_path):
    c = ProcCluster(tmp_path, agents=2, schedulers=1, slots=2, dead_after_ms=800)
    try:
        with Client(urls(c), poll_interval=0.1) as client:
            h = client.submit(cores=1, memory_mb=64, duration_ms=2000)
            node = poll(lambda: h.status().get("node"), 10, what="placed")
            c.kill(c.agents[int(node.split("-")[1])])
            final = h.result(timeout=60)
            assert final["state"] == "succeeded" and final["node"] != node
            assert h.resubmits == 1
    finally:
        c.stop()


async def test_async_client_has_the_same_methods(sleep_cluster):
    async with AsyncClient(urls(sleep_cluster), poll_interval=0.1) as client:
        handles = await client.submit_many([dict(NOOP) for _ in range(30)])
        got = [h async for h in client.as_completed(handles, timeout=60)]
        assert len(got) == 30
        assert (await handles[0].result(timeout=5))["state"] == "succeeded"
        assert (await client.status(handles[1].id))["state"] == "succeeded"
        done, _ = await client.wait(handles, timeout=5)
        assert len(done) == 30


async def test_submit_once_and_statuses_are_single_rounds_for_callers_that_schedule(
        sleep_cluster):
    async with AsyncClient(urls(sleep_cluster), poll_interval=0.1) as client:
        tasks = [dict(NOOP, id=f"once-{i}") for i in range(12)]
        before = client.requests
        placed = await client.submit_once(tasks)
        assert client.requests - before <= 2  # one request per scheduler
        assert sorted(placed) == sorted(t["id"] for t in tasks)
        assert all(p["node"].startswith("node-") and not p.get("error")
                   for p in placed.values())
        refused = await client.submit_once([dict(NOOP, id="too-big", cores=512)])
        assert refused["too-big"]["status"] == 422 and refused["too-big"]["node"] is None
        assert "cores" in refused["too-big"]["error"]
        with pytest.raises(ValueError, match=r"tasks\[1\]"):
            await client.submit_once([dict(NOOP, id="named"), dict(NOOP)])

        async def all_succeeded() -> dict:
            while True:
                before = client.requests
                got = await client.statuses([*placed, "no-such-id"])
                assert client.requests - before <= 2
                if all(got[i]["state"] == "succeeded" for i in placed):
                    return got
                await asyncio.sleep(0.1)

        got = await asyncio.wait_for(all_succeeded(), 30)
        assert got["no-such-id"] == {"id": "no-such-id", "state": None,
                                     "error": {"status": 404, "reason": got["no-such-id"]
                                               ["error"]["reason"]}}
        assert {got[i]["node"] for i in placed} == {p["node"] for p in placed.values()}
    async with AsyncClient([f"http://127.0.0.1:{_closed_port()}"], timeout=1.0) as dead:
        assert await dead.statuses(["a", "b"]) == {}  # not answered: absent, ask again
        out = await dead.submit_once([dict(NOOP, id="a")])
        assert out["a"]["status"] == 0 and "no scheduler answered" in out["a"]["error"]


REPO = Path(__file__).resolve().parents[2]


def test_the_daemons_never_load_the_client():
    """Static imports are checked by the import-linter contracts (pyproject.toml); this checks
    what actually loads: the tools import the client inside their functions."""
    probe = ("import sys, dodoor.tools.cli, scheduler.app, scheduler.loadstore.app, node_agent.app; "
             "dodoor.tools.cli.build_parser(); "
             "print(any(m.startswith('dodoor.client') for m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=REPO, check=True).stdout.strip()
    assert loaded == "False"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
