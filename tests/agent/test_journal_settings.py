import argparse

import pytest

from dodoor.errors import ValidationError
from node_agent.app import STATE, create_app
from node_agent.command import register, settings_from_args
from node_agent.journal import Journal, JournalError
from node_agent.settings import AgentSettings, host_capacity
from tests.agent.conftest import GatedExecutor, enqueue, make_task, wait_for


async def test_journal_round_trip_and_order(tmp_path):
    path = tmp_path / "sub" / "j.sqlite"
    j = Journal(path)
    await j.open()
    t = make_task("a", cores=1.5, env={"K": "V"}, command=("echo", "x"))
    assert await j.insert(t, "s0", "queued", 10.0) is True
    assert await j.insert(t, "s1", "queued", 11.0) is False  # same id: kept once
    assert await j.insert(make_task("b"), "s0", "queued", 12.0)
    await j.mark_running("a", 20.0)
    await j.finish("b", "failed", 30.0, 2, "exit code 2", "tail")
    with pytest.raises(ValueError, match="'running'"):
        await j.finish("a", "running", 1.0, None, None, "")
    await j.close()

    j2 = Journal(path)
    await j2.open()
    [rec] = await j2.unfinished()
    assert (rec.task, rec.scheduler_id, rec.state, rec.queued_ms, rec.started_ms) == (t, "s0", "running", 10.0, 20.0)
    b = await j2.get("b")
    assert (b.state, b.finished_ms, b.exit_code, b.reason, b.log_tail) == ("failed", 30.0, 2, "exit code 2", "tail")
    assert await j2.counts() == {"running": 1, "failed": 1}
    assert await j2.get("zz") is None
    await j2.close()


async def test_journal_errors_are_journal_errors(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    with pytest.raises(JournalError, match="not open"):
        await j.get("a")
    await j.close()
    (tmp_path / "bad.sqlite").write_bytes(b"this is not a database" * 100)
    bad = Journal(tmp_path / "bad.sqlite")
    with pytest.raises(JournalError, match="bad.sqlite"):
        await bad.open()
    await bad.close()


async def test_one_journal_one_agent(tmp_path):
    first = Journal(tmp_path / "shared.sqlite")
    await first.open()
    second = Journal(tmp_path / "shared.sqlite")
    with pytest.raises(JournalError, match="in use by another agent"):
        await second.open()
    await second.close()
    await first.close()
    third = Journal(tmp_path / "shared.sqlite")  # released on close
    await third.open()
    await third.close()


async def test_restart_with_smaller_capacity_fails_what_cannot_fit(aiohttp_client, agent_settings):
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(cores=4.0, slots=1), executor=ex))
    await enqueue(client, make_task("a", cores=1.0))
    await enqueue(client, make_task("wide", cores=3.0))
    await wait_for(lambda: ex.started == ["a"])
    await client.close()
    ex2 = GatedExecutor()
    client2 = await aiohttp_client(create_app(agent_settings(cores=2.0, slots=1), executor=ex2))
    await wait_for(lambda: ex2.started == ["a"])
    body = await (await client2.get("/v1/tasks/wide")).json()
    assert body["state"] == "failed" and "after a restart" in body["reason"]
    assert client2.app[STATE].agent.queue.n_waiting == 0


def parse(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["agent", *argv])


def test_settings_from_flags_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DODOOR_TOKEN", "from-env")
    s = settings_from_args(parse(["--loadstore", "http://127.0.0.1:8090", "--id", "n3", "--port", "8300",
                                  "--cores", "2.5", "--memory-mb", "4096", "--disk-mb", "100",
                                  "--journal", str(tmp_path / "j")]))
    assert (s.node_id, s.cores, s.memory_mb, s.disk_mb, s.slots) == ("n3", 2.5, 4096.0, 100.0, 2)
    assert (s.token, s.url, s.executor) == ("from-env", "http://127.0.0.1:8300", "sleep")
    assert s.auth_headers == {"Authorization": "Bearer from-env"}
    s2 = settings_from_args(parse(["--loadstore", "x", "--token", "flag", "--slots", "7",
                                   "--advertise-url", "http://localhost:1", "--journal", str(tmp_path / "j")]))
    host = host_capacity(str(tmp_path / "j"))
    assert (s2.cores, s2.memory_mb, s2.disk_mb, s2.slots) == (host.cores, host.memory_mb, host.disk_mb, 7)
    assert host.cores >= 1 and host.memory_mb > 0 and host.disk_mb > 0
    assert (s2.token, s2.url) == ("flag", "http://localhost:1")


@pytest.mark.parametrize("field, value", [("cores", 0.0), ("memory_mb", float("nan")), ("disk_mb", -1.0),
                                          ("slots", 0), ("executor", "vm"), ("report_interval_ms", 0.0)])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValidationError) as err:
        AgentSettings(**{field: value})
    assert err.value.field == field


async def test_concurrent_writes_share_commits_and_stay_exact(tmp_path):
    import asyncio

    j = Journal(tmp_path / "g.sqlite")
    await j.open()
    ids = [f"t{i % 40}" for i in range(120)]  # every id three times, concurrently
    results = await asyncio.gather(*(j.insert(make_task(t), "s", "queued", float(n)) for n, t in enumerate(ids)))
    assert sum(results) == 40
    assert [r for r, t in zip(results, ids) if t == "t0"] == [True, False, False]  # first writer wins
    await asyncio.gather(*(j.finish(f"t{i}", "succeeded", 1.0, 0, None, "") for i in range(40)))
    await j.close()
    j2 = Journal(tmp_path / "g.sqlite")
    await j2.open()
    assert await j2.counts() == {"succeeded": 40}
    assert (await j2.get("t5")).queued_ms == 5.0
    await j2.close()


async def test_journal_keeps_only_the_newest_finished_results(aiohttp_client, agent_settings):
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(slots=1, journal_keep_finished=3), executor=ex))
    agent = client.app[STATE].agent
    for i in range(6):
        await enqueue(client, make_task(f"k{i}"))
    await enqueue(client, make_task("waiting"))
    for i in range(6):
        await wait_for(lambda: ex.started[-1:] == [f"k{i}"])
        ex.release(f"k{i}")
    await wait_for(lambda: ex.started[-1:] == ["waiting"])
    await wait_for(lambda: agent.finished["succeeded"] == 6)

    async def pruned():
        return await agent.journal.counts() == {"succeeded": 3, "running": 1}

    await wait_for(pruned)  # unfinished work is never pruned
    codes = [(await client.get(f"/v1/tasks/k{i}")).status for i in range(6)]
    assert codes == [404, 404, 404, 200, 200, 200]
