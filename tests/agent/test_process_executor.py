import asyncio
import sys

from dodoor.resources import Task
from node_agent.app import AGENT, create_app
from node_agent.process_executor import LOG_TAIL_BYTES, ProcessExecutor
from tests.agent.conftest import enqueue, wait_for

PY = sys.executable


def ptask(tid, code, memory_mb=256.0, duration_ms=1000.0, **kw):
    return Task(tid, 1.0, memory_mb, 0.0, duration_ms, command=(PY, "-c", code), **kw)


async def test_success_captures_output_and_env():
    ex = ProcessExecutor()
    result = await ex.run(ptask("ok", "import os; print('hi', os.environ['DODOOR_CORES'], os.environ['X'])",
                                env={"X": "y"}))
    assert (result.state, result.exit_code, result.reason) == ("succeeded", 0, None)
    assert result.log_tail == "hi 1 y\n"


async def test_nonzero_exit_is_failed_with_code():
    result = await ProcessExecutor().run(ptask("bad", "import sys; print('oops', file=sys.stderr); sys.exit(3)"))
    assert (result.state, result.exit_code, result.reason) == ("failed", 3, "exit code 3")
    assert "oops" in result.log_tail


async def test_memory_limit_exceeded_fails_the_task():
    # 150 MiB limit; the task touches 600 MiB.
    result = await ProcessExecutor().run(ptask("mem", "b = bytearray(600 * 1024 * 1024)", memory_mb=150))
    assert result.state == "failed"
    assert result.exit_code != 0
    assert "MemoryError" in result.log_tail
    # the same allocation within the limit succeeds
    ok = await ProcessExecutor().run(ptask("mem2", "b = bytearray(60 * 1024 * 1024)", memory_mb=400))
    assert ok.state == "succeeded"


async def test_wall_timeout_kills_the_process_group():
    ex = ProcessExecutor(timeout_ms=300)
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    result = await ex.run(ptask("slow", code))
    assert loop.time() - t0 < 5.0
    assert result.state == "failed" and result.exit_code == -9
    assert result.reason == "timed out after 300 ms"


async def test_log_tail_is_bounded_to_the_end():
    result = await ProcessExecutor().run(ptask("loud", "print('x' * 100000 + 'END')"))
    assert len(result.log_tail) <= LOG_TAIL_BYTES
    assert result.log_tail.endswith("END\n")


async def test_missing_command_or_binary_fails_with_reason():
    r1 = await ProcessExecutor().run(Task("n", 1.0, 10.0))
    assert (r1.state, r1.reason) == ("failed", "the process executor needs a command")
    r2 = await ProcessExecutor().run(Task("n", 1.0, 10.0, command=("/nonexistent/binary",)))
    assert r2.state == "failed" and "/nonexistent/binary" in r2.reason


def test_default_wall_limit_scales_with_the_estimate():
    ex = ProcessExecutor()
    assert ex.wall_limit_ms(Task("a", 1.0, 1.0, duration_ms=100.0)) == 60_000.0
    assert ex.wall_limit_ms(Task("a", 1.0, 1.0, duration_ms=30_000.0)) == 300_000.0


async def test_agent_with_process_executor_reports_exit_codes(aiohttp_client, agent_settings):
    client = await aiohttp_client(create_app(agent_settings(executor="process", memory_mb=2000.0)))
    await enqueue(client, ptask("p-ok", "print(1)"))
    await enqueue(client, ptask("p-bad", "raise SystemExit(5)"))
    await enqueue(client, ptask("p-mem", "b = bytearray(800 * 1024 * 1024)", memory_mb=200))

    async def done():
        return client.app[AGENT].finished.total() == 3

    await wait_for(done, timeout=20)
    bodies = {t: await (await client.get(f"/v1/tasks/{t}")).json() for t in ("p-ok", "p-bad", "p-mem")}
    assert (bodies["p-ok"]["state"], bodies["p-ok"]["exit_code"]) == ("succeeded", 0)
    assert (bodies["p-bad"]["state"], bodies["p-bad"]["exit_code"]) == ("failed", 5)
    assert bodies["p-mem"]["state"] == "failed" and bodies["p-mem"]["exit_code"] == 1
    assert "MemoryError" in bodies["p-mem"]["log_tail"]
    assert bodies["p-ok"]["log_tail"] == "1\n"
