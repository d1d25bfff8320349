"""A journal row whose task no longer reads must not stop the agent: it ends failed, the rest runs."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from dodoor.clock import ManualClock
from dodoor.wire import Reserve
from node_agent.app import STATE, create_app
from node_agent.journal import Journal, JournalError
from node_agent.node import NodeAgent
from tests.agent.conftest import GatedExecutor, enqueue, make_task, post, wait_for

# What an upgrade that tightened validation, or a damaged file, can leave in the task column.
BAD_ROWS = {
    "bad-json": ("{not json", "unreadable journal row: Expecting property name"),
    "bad-task": (json.dumps({"id": "bad-task", "cores": -1, "memory_mb": 100}),
                 "unreadable journal row: cores: must be > 0, got -1"),
    "bad-field": (json.dumps({"id": "bad-field", "cores": 1, "memory_mb": 100, "gpus": 1}),
                  "unreadable journal row: gpus: unknown field"),
    "wrong-id": (json.dumps({"id": "someone-else", "cores": 1, "memory_mb": 100}),
                 "unreadable journal row: its task id 'someone-else' is not the row's id 'wrong-id'"),
}


def corrupt(path: str | Path, task_id: str, text: str) -> None:
    """Overwrite a row's task column behind the journal's back."""
    with closing(sqlite3.connect(path)) as conn, conn:
        changed = conn.execute("UPDATE tasks SET task = ? WHERE id = ?", (text, task_id)).rowcount
    assert changed == 1, f"no journal row {task_id!r} in {path}"


async def write_journal(path: str | Path, finished_at_ms: float = 1.0) -> None:
    """Queued ``good-0``, ``good-1`` and every BAD_ROWS id (``bad-task`` running), a finished
    ``done-ok`` and a finished ``done-bad`` (both succeeded), then the bad task columns."""
    j = Journal(path)
    await j.open()
    ids = ["good-0", *BAD_ROWS, "good-1", "done-ok", "done-bad"]
    await j.insert_many([make_task(t, duration_ms=20.0) for t in ids], "sched-0", "queued", 1.0)
    await j.mark_running("bad-task", 2.0)
    for done in ("done-ok", "done-bad"):
        await j.finish(done, "succeeded", finished_at_ms, 0, None, f"{done} tail")
    await j.close()
    for task_id, (text, _) in BAD_ROWS.items():
        corrupt(path, task_id, text)
    corrupt(path, "done-bad", "")


async def test_journal_reads_around_an_unreadable_row(tmp_path):
    path = tmp_path / "j.sqlite"
    await write_journal(path)
    j = Journal(path)
    await j.open()
    with pytest.raises(JournalError, match="'bad-json' holds a bad task"):
        await j.get("bad-json")
    assert (await j.status("bad-json")).state == "queued"  # the status columns still read
    done = await j.status("done-bad")
    assert (done.state, done.exit_code, done.log_tail) == ("succeeded", 0, "done-bad tail")
    assert [r.task.task_id for r in await j.unfinished()] == ["good-0", "good-1"]

    bad = await j.fail_unreadable(50.0)
    assert [(b.task_id, b.was) for b in bad] == [
        ("bad-json", "queued"), ("bad-task", "running"), ("bad-field", "queued"), ("wrong-id", "queued")]
    for b in bad:
        assert b.reason.startswith(BAD_ROWS[b.task_id][1]), b.reason
        row = await j.status(b.task_id)
        assert (row.state, row.finished_ms, row.reason) == ("failed", 50.0, b.reason)
    assert await j.fail_unreadable(60.0) == []  # ended once; a finished row is left alone
    assert await j.counts() == {"queued": 2, "failed": 4, "succeeded": 2}
    await j.close()


async def test_resume_fails_unreadable_rows_and_runs_the_rest(tmp_path):
    path = tmp_path / "j.sqlite"
    await write_journal(path)
    journal = Journal(path)
    await journal.open()
    ex = GatedExecutor()
    agent = NodeAgent("node-t", np.array([4.0, 1000.0, 0.0]), 2, ex, journal, ManualClock(7000.0))
    try:
        assert await agent.resume() == 2
        await wait_for(lambda: ex.started == ["good-0", "good-1"])
        assert agent.finished == {"failed": 4}
        for task_id, (_, reason) in BAD_ROWS.items():
            status, _ = await agent.status_and_log(task_id)
            assert (status.state, status.finished_ms) == ("failed", 7000.0)
            assert status.reason.startswith(reason), status.reason
        ex.release("good-0")
        ex.release("good-1")
        await wait_for(lambda: agent.finished == {"failed": 4, "succeeded": 2})
        assert (await agent.status("good-1")).state == "succeeded"
    finally:
        await agent.close()
        await journal.close()


async def test_agent_with_unreadable_rows_starts_and_answers_them(aiohttp_client, agent_settings, caplog):
    settings = agent_settings()
    # finished just now: a result from 1970 would have expired (the default retention is a week)
    await write_journal(settings.journal_path, finished_at_ms=time.time() * 1000.0)
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(settings, executor=ex))
    await wait_for(lambda: ex.started == ["good-0", "good-1"])
    assert (await client.get("/healthz")).status == 200

    for task_id, (_, reason) in BAD_ROWS.items():
        resp = await client.get(f"/v1/tasks/{task_id}")
        assert resp.status == 200
        body = await resp.json()
        assert body["state"] == "failed" and body["reason"].startswith(reason), body
    # A finished row whose task column broke keeps the result it recorded.
    body = await (await client.get("/v1/tasks/done-bad")).json()
    assert (body["state"], body["exit_code"], body["log_tail"]) == ("succeeded", 0, "done-bad tail")
    # Each unreadable row is logged once, naming the task and the problem.
    logged = [r.getMessage() for r in caplog.records if "cannot be resumed" in r.getMessage()]
    assert len(logged) == 4 and any("bad-json" in m and "Expecting" in m for m in logged)
    metrics = await (await client.get("/metrics")).text()
    assert 'dodoor_agent_tasks_total{node="node-t",state="failed"} 4.0' in metrics
    # The id stays known: a reservation for it is refused, a resend is not run again.
    assert (await post(client, "/internal/reserve",
                       Reserve(make_task("done-bad"), "sched-s", "http://127.0.0.1:1/x"))).status == 202
    assert client.app[STATE].agent.queue.get("done-bad") is None
    assert (await enqueue(client, make_task("bad-json"))).status == 202
    assert client.app[STATE].agent.queue.get("bad-json") is None

    ex.release("good-0")
    ex.release("good-1")
    await wait_for(lambda: client.app[STATE].agent.finished == {"failed": 4, "succeeded": 2})
