"""Time-based retention of finished results: old ones go, new and unfinished ones stay."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest

from dodoor.clock import ManualClock
from dodoor.errors import ValidationError
from node_agent.app import STATE, create_app
from node_agent.command import register, settings_from_args
from node_agent.journal import Journal
from node_agent.retention import Retention, describe_period, prune_interval_s, unknown_task_reason
from node_agent.settings import AgentSettings
from tests.agent.conftest import GatedExecutor, enqueue, make_task, wait_for
from tests.daemons.conftest import REPO

DAY_MS = 86400_000.0
# The journal's table as every earlier version created it, before the retention index.
OLD_SCHEMA = """
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, task TEXT NOT NULL,
    scheduler_id TEXT NOT NULL, state TEXT NOT NULL, queued_ms REAL, started_ms REAL,
    finished_ms REAL, exit_code INTEGER, reason TEXT, log_tail TEXT NOT NULL DEFAULT '')
"""
PRUNE_QUERY = ("SELECT seq FROM tasks WHERE state IN ('succeeded', 'failed') AND finished_ms < 5"
               " LIMIT 10")


async def _journal_with_ages(path) -> Journal:
    """``old-*`` finished long ago, ``new-*`` recently, ``q``/``r`` never (queued/running)."""
    j = Journal(path)
    await j.open()
    ids = ["old-s", "old-f", "new-s", "new-f", "q", "r"]
    await j.insert_many([make_task(t) for t in ids], "s0", "queued", 0.0)
    await j.mark_running("r", 1.0)
    await j.finish("old-s", "succeeded", 10_000.0, 0, None, "")
    await j.finish("old-f", "failed", 59_999.0, 1, "exit code 1", "")
    await j.finish("new-s", "succeeded", 60_000.0, 0, None, "")
    await j.finish("new-f", "failed", 100_000.0, None, "boom", "")
    return j


async def _ids(j: Journal) -> set[str]:
    ids = set()
    for t in ["old-s", "old-f", "new-s", "new-f", "q", "r"]:
        if await j.status(t) is not None:
            ids.add(t)
    return ids


async def test_prune_finished_before_forgets_only_old_finished_rows(tmp_path):
    j = await _journal_with_ages(tmp_path / "j.sqlite")
    assert await j.prune_finished_before(60_000.0) == 2  # strictly before: 60 000 stays
    assert await _ids(j) == {"new-s", "new-f", "q", "r"}
    assert await j.prune_finished_before(1e18) == 2  # unfinished rows never go, however old
    assert await _ids(j) == {"q", "r"}
    with pytest.raises(ValueError, match="limit must be >= 1, got 0"):
        await j.prune_finished_before(1.0, limit=0)
    await j.close()


async def test_retention_on_a_manual_clock_prunes_in_batches(tmp_path):
    j = await _journal_with_ages(tmp_path / "j.sqlite")
    clock = ManualClock(100_000.0)
    retention = Retention(j, clock, retention_s=40.0, batch=1)  # cutoff at 60 000 ms
    assert await retention.prune_once() == 2  # two batches of one, then an empty one
    assert await _ids(j) == {"new-s", "new-f", "q", "r"}
    assert await retention.prune_once() == 0
    clock.advance(40_000.0)  # now 140 000: new-f (100 000) is exactly 40 s old and stays
    assert await retention.prune_once() == 1
    assert await _ids(j) == {"new-f", "q", "r"}
    clock.advance(10 * DAY_MS)
    assert await retention.prune_once() == 1
    assert await _ids(j) == {"q", "r"} and retention.pruned == 4
    assert await j.counts() == {"queued": 1, "running": 1}
    await j.close()


async def test_an_old_journal_file_gains_the_retention_index(tmp_path):
    path = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(OLD_SCHEMA)
        conn.execute("INSERT INTO tasks (id, task, scheduler_id, state, queued_ms, finished_ms)"
                     " VALUES ('a', ?, 's0', 'succeeded', 0, 3)", (json.dumps(make_task("a").to_dict()),))
        plan = conn.execute("EXPLAIN QUERY PLAN " + PRUNE_QUERY).fetchall()
        assert "SCAN" in plan[0][3]  # without the index a prune reads every row
    j = Journal(path)
    await j.open()
    assert (await j.get("a")).task == make_task("a")
    await j.close()
    with closing(sqlite3.connect(path)) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        plan = conn.execute("EXPLAIN QUERY PLAN " + PRUNE_QUERY).fetchall()
    assert "tasks_state_finished" in indexes
    assert "USING COVERING INDEX tasks_state_finished" in plan[0][3], plan
    j = Journal(path)  # opening again is a no-op
    await j.open()
    assert await j.prune_finished_before(5.0) == 1
    await j.close()


async def test_an_expired_id_answers_404_naming_the_retention(aiohttp_client, agent_settings):
    clock = ManualClock(1_000_000.0)
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(), executor=ex, clock=clock))
    retention = client.app[STATE].retention
    assert retention.interval_s == 3600.0  # the default week is pruned hourly
    await enqueue(client, make_task("done"))
    await wait_for(lambda: ex.started == ["done"])
    ex.release("done")
    await wait_for(lambda: client.app[STATE].agent.finished["succeeded"] == 1)
    await enqueue(client, make_task("waiting"))  # running, never finished: never pruned

    clock.advance(7 * DAY_MS)  # exactly a week: still kept
    assert await retention.prune_once() == 0
    assert (await client.get("/v1/tasks/done")).status == 200
    clock.advance(1.0)
    assert await retention.prune_once() == 1
    resp = await client.get("/v1/tasks/done")
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert error == {"field": "id", "reason": "unknown task 'done': this agent never accepted it,"
                     " or its result expired (finished results are kept for 7 days after they end)"}
    never = (await (await client.get("/v1/tasks/never-seen")).json())["error"]["reason"]
    assert "never accepted" in never and "7 days" in never
    assert (await client.get("/v1/tasks/waiting")).status == 200
    # A forgotten id is no longer recognised as a duplicate: sent again, it runs again.
    await enqueue(client, make_task("done"))
    await wait_for(lambda: ex.started == ["done", "waiting", "done"])


async def test_the_retention_loop_runs_in_the_background_and_stops_with_the_app(
        aiohttp_client, agent_settings):
    clock = ManualClock(0.0)
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(journal_retention_s=1.0), executor=ex,
                                             clock=clock))
    assert client.app[STATE].retention.interval_s == 1.0
    await enqueue(client, make_task("t"))
    await wait_for(lambda: ex.started == ["t"])
    ex.release("t")
    await wait_for(lambda: client.app[STATE].agent.finished["succeeded"] == 1)
    clock.advance(1001.0)

    async def expired():
        return (await client.get("/v1/tasks/t")).status == 404

    await wait_for(expired, timeout=5.0, interval=0.05)  # the loop's next round, within ~1 s
    reason = (await (await client.get("/v1/tasks/t")).json())["error"]["reason"]
    assert "kept for 1 s after they end" in reason
    await client.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("retention-")]


async def test_zero_retention_keeps_results_forever(aiohttp_client, agent_settings):
    clock = ManualClock(0.0)
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(journal_retention_s=0.0), executor=ex,
                                             clock=clock))
    assert client.app[STATE].retention is None  # no loop at all
    await enqueue(client, make_task("t"))
    await wait_for(lambda: ex.started == ["t"])
    ex.release("t")
    await wait_for(lambda: client.app[STATE].agent.finished["succeeded"] == 1)
    clock.advance(1000 * DAY_MS)
    assert (await client.get("/v1/tasks/t")).status == 200
    reason = (await (await client.get("/v1/tasks/x")).json())["error"]["reason"]
    assert reason == "unknown task 'x': this agent never accepted it"


def test_unknown_task_reason_names_every_rule():
    assert unknown_task_reason("a", 0.0, 100) == (
        "unknown task 'a': this agent never accepted it, or its result expired"
        " (finished results are kept only the newest 100)")
    assert unknown_task_reason("a", 86400.0, 5).endswith(
        "(finished results are kept for 1 day after they end and only the newest 5)")
    assert [describe_period(s) for s in (604800, 86400, 129600, 7200, 120, 90, 0.5)] == [
        "7 days", "1 day", "36 h", "2 h", "2 min", "90 s", "0.5 s"]
    assert [prune_interval_s(s) for s in (604800, 600, 0.2)] == [3600.0, 60.0, 1.0]
    with pytest.raises(ValueError, match="got 0"):
        prune_interval_s(0)


def _parse(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["agent", "--loadstore", "x", "--cores", "1", "--memory-mb", "100",
                              "--disk-mb", "0", *argv])


def test_retention_setting_from_flag_environment_and_default(monkeypatch):
    monkeypatch.delenv("DODOOR_JOURNAL_RETENTION_S", raising=False)
    assert settings_from_args(_parse([])).journal_retention_s == 7 * 86400.0
    assert settings_from_args(_parse(["--journal-retention-s", "0"])).journal_retention_s == 0.0
    monkeypatch.setenv("DODOOR_JOURNAL_RETENTION_S", "3600")
    assert settings_from_args(_parse([])).journal_retention_s == 3600.0
    assert settings_from_args(_parse(["--journal-retention-s", "60"])).journal_retention_s == 60.0


@pytest.mark.parametrize("argv, env, field, shown", [
    (["--journal-retention-s", "-1"], None, "--journal-retention-s", "-1.0"),
    (["--journal-retention-s", "inf"], None, "--journal-retention-s", "inf"),
    ([], "-5", "$DODOOR_JOURNAL_RETENTION_S", "-5.0"),
    ([], "a week", "$DODOOR_JOURNAL_RETENTION_S", "'a week'"),
])
def test_bad_retention_names_the_flag_or_variable(monkeypatch, argv, env, field, shown):
    if env is None:
        monkeypatch.delenv("DODOOR_JOURNAL_RETENTION_S", raising=False)
    else:
        monkeypatch.setenv("DODOOR_JOURNAL_RETENTION_S", env)
    with pytest.raises(ValidationError) as err:
        settings_from_args(_parse(argv))
    assert err.value.field == field and shown in err.value.reason


def test_negative_retention_in_settings_names_the_field():
    with pytest.raises(ValidationError) as err:
        AgentSettings(journal_retention_s=-0.5)
    assert err.value.field == "journal_retention_s" and "-0.5" in err.value.reason


def test_the_cli_refuses_a_negative_retention_naming_the_flag(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "dodoor", "agent", "--loadstore", "http://127.0.0.1:1",
         "--cores", "1", "--memory-mb", "100", "--disk-mb", "0", "--journal-retention-s", "-1",
         "--journal", str(tmp_path / "j.sqlite")],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": str(REPO), "DODOOR_JOURNAL_RETENTION_S": ""})
    assert done.returncode == 2, done.stderr
    assert "dodoor agent: error: --journal-retention-s: must be a finite number of seconds >= 0" \
        in done.stderr and "got -1.0" in done.stderr
    assert not (tmp_path / "j.sqlite").exists()  # refused before touching anything
