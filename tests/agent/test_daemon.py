"""The real `dodoor agent` process on loopback: SIGKILL mid-queue, restart, every task ends."""

import os
import signal
import socket
import subprocess
import sys

import aiohttp
import pytest

from dodoor.wire import CONTENT_TYPE, Enqueue, encode
from tests.agent.conftest import FakeLoadStore, make_task, wait_for
from tests.daemons.conftest import free_port

TOKEN = "daemon-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def stand_in_store(aiohttp_server) -> tuple[FakeLoadStore, str]:
    """A load store that records the reports of real agents; returns it and its url."""
    fake = FakeLoadStore()
    server = await aiohttp_server(fake.app, host="127.0.0.1", port=free_port())
    return fake, str(server.make_url("")).rstrip("/")


def spawn(port: int, loadstore: str, journal: str, log_path, node_id: str = "node-k",
          executor: str = "sleep", extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """A real agent (2 cores, 1000 MB, 2 slots) reporting to ``loadstore`` every 50 ms."""
    cmd = [sys.executable, "-m", "dodoor", "agent", "--host", "127.0.0.1", "--port", str(port),
           "--id", node_id, "--loadstore", loadstore, "--executor", executor, *extra,
           "--cores", "2", "--memory-mb", "1000", "--disk-mb", "0", "--slots", "2",
           "--journal", journal, "--report-interval-ms", "50"]
    env = {**os.environ, "DODOOR_TOKEN": TOKEN}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(log_path, "ab"),
                            cwd=os.getcwd())


async def healthy(http: aiohttp.ClientSession, base: str) -> bool:
    """Whether the agent at ``base`` answers its health check."""
    try:
        async with http.get(base + "/healthz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def task_states(http: aiohttp.ClientSession, base: str, ids) -> dict[str, str | None]:
    """Each id's state as the agent at ``base`` answers it (None: not found)."""
    out = {}
    for tid in ids:
        async with http.get(f"{base}/v1/tasks/{tid}", headers=AUTH) as r:
            out[tid] = (await r.json())["state"] if r.status == 200 else None
    return out


@pytest.mark.slow
async def test_sigkill_mid_queue_then_restart_finishes_everything(aiohttp_server, tmp_path):
    store, loadstore = await stand_in_store(aiohttp_server)
    reports = store.states
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    journal, log_path = str(tmp_path / "agent.sqlite"), tmp_path / "agent.log"
    ids = [f"k{i}" for i in range(8)]

    async with aiohttp.ClientSession() as http:
        async def states():
            return await task_states(http, base, ids)

        proc = spawn(port, loadstore, journal, log_path)
        try:
            await wait_for(lambda: healthy(http, base), timeout=20)
            for tid in ids:
                body = encode(Enqueue(make_task(tid, duration_ms=400.0), "sched-0"))
                async with http.post(base + "/internal/enqueue", data=body,
                                     headers={**AUTH, "Content-Type": CONTENT_TYPE}) as r:
                    assert r.status == 202
            async with http.post(base + "/internal/enqueue", data=b"") as r:
                assert r.status == 401
            first = await wait_for(lambda: _some_done(states), timeout=10)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert 1 <= sum(s == "succeeded" for s in first.values()) < len(ids)

        proc = spawn(port, loadstore, journal, log_path)
        try:
            await wait_for(lambda: healthy(http, base), timeout=20)
            final = await wait_for(lambda: _all_done(states), timeout=20)
            assert set(final.values()) == {"succeeded"}
            async with http.get(base + "/metrics", headers=AUTH) as r:
                text = await r.text()
            assert 'dodoor_agent_queue_length{node="node-k"} 0.0' in text
            await wait_for(lambda: reports and reports[-1].state[3] == 0, timeout=5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert store.auth_seen == {f"Bearer {TOKEN}"}
    assert {r.node_id for r in reports} == {"node-k"}
    log_text = log_path.read_text()
    assert "resumed" in log_text and "stopping" in log_text


async def _some_done(states):
    s = await states()
    return s if any(v == "succeeded" for v in s.values()) else None


async def _all_done(states):
    s = await states()
    return s if all(v in ("succeeded", "failed") for v in s.values()) else None


def test_busy_port_is_a_clear_error_not_a_hang(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # the load store URL points nowhere (loopback port 1), so the reporter has just
        # failed a report when startup fails; uvloop then hung on a cancelled wait_for
        done = subprocess.run(
            [sys.executable, "-m", "dodoor", "agent", "--port", str(port), "--loadstore",
             "http://127.0.0.1:1", "--cores", "1", "--memory-mb", "100", "--disk-mb", "0",
             "--journal", str(tmp_path / "j.sqlite")],
            capture_output=True, text=True, timeout=30, cwd=os.getcwd())
    assert done.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in done.stderr
