"""The agent's side of the executor seam: handles journaled, reconcile fed, forget after the commit."""

import sqlite3

from node_agent.app import STATE, create_app
from node_agent.executor import Adopted, TaskResult
from node_agent.journal import Journal
from tests.agent.conftest import GatedExecutor, enqueue, make_task, wait_for


class CheckingExecutor(GatedExecutor):
    """Records, at each ``forget``, the task's state in the journal file (read on the side)."""

    def __init__(self, journal_path: str) -> None:
        super().__init__()
        self.journal_path = journal_path
        self.state_at_forget: dict[str, str | None] = {}

    async def forget(self, task_id: str) -> None:
        await super().forget(task_id)
        with sqlite3.connect(self.journal_path) as conn:
            row = conn.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
        self.state_at_forget[task_id] = row[0] if row else None


async def test_handles_are_journaled_and_handed_to_the_next_reconcile(aiohttp_client,
                                                                      agent_settings):
    settings = agent_settings(slots=2)
    ex = CheckingExecutor(settings.journal_path)
    client = await aiohttp_client(create_app(settings, executor=ex))
    for tid in ("a", "b", "c", "d"):
        await enqueue(client, make_task(tid))
    await wait_for(lambda: ex.started == ["a", "b"])
    journal = client.app[STATE].agent.journal

    async def handle_of(tid):
        record = await journal.get(tid)
        return record.handle if record else None

    await wait_for(lambda: handle_of("b"))
    assert await handle_of("a") == "gated:a"
    ex.release("a")
    await wait_for(lambda: ex.started == ["a", "b", "c"])
    # forgotten only once the result was committed (the slot is free before that)
    await wait_for(lambda: ex.forgotten == ["a"])
    assert ex.state_at_forget == {"a": "succeeded"}
    await wait_for(lambda: handle_of("c"))
    await client.close()  # b and c stay running in the journal, d queued

    ex2 = CheckingExecutor(settings.journal_path)
    ex2.adopt = [Adopted("c", running=False, result=TaskResult("failed", exit_code=4,
                                                                  reason="exit code 4"))]
    client2 = await aiohttp_client(create_app(settings, executor=ex2))
    got = {row.task_id: (row.state, row.handle) for row in ex2.interrupted}
    assert got == {"b": ("running", "gated:b"), "c": ("running", "gated:c"), "d": ("queued", None)}
    # the result reconcile found is journaled before the executor may drop it
    assert ex2.forgotten == ["c"] and ex2.state_at_forget == {"c": "failed"}
    await wait_for(lambda: ex2.started == ["b", "d"])  # c is not run again
    ex2.release("b")
    ex2.release("d")
    await wait_for(lambda: len(ex2.state_at_forget) == 3)
    assert ex2.state_at_forget == {"c": "failed", "b": "succeeded", "d": "succeeded"}


async def test_a_failing_forget_does_not_wedge_the_slot(aiohttp_client, agent_settings):
    class Failing(GatedExecutor):
        async def forget(self, task_id):
            raise RuntimeError("engine gone")

    ex = Failing()
    client = await aiohttp_client(create_app(agent_settings(slots=1), executor=ex))
    await enqueue(client, make_task("x"))
    await enqueue(client, make_task("y"))
    await wait_for(lambda: ex.started == ["x"])
    ex.release("x")
    await wait_for(lambda: ex.started == ["x", "y"])
    assert (await client.app[STATE].agent.journal.get("x")).state == "succeeded"


async def test_a_journal_without_the_handle_column_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    # the schema journals were written with before handles existed
    conn.execute("""CREATE TABLE tasks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, task TEXT NOT NULL,
        scheduler_id TEXT NOT NULL, state TEXT NOT NULL, queued_ms REAL, started_ms REAL,
        finished_ms REAL, exit_code INTEGER, reason TEXT, log_tail TEXT NOT NULL DEFAULT '')""")
    conn.execute("INSERT INTO tasks (id, task, scheduler_id, state, queued_ms, started_ms) VALUES"
                 " ('old', '{\"id\": \"old\", \"cores\": 1, \"memory_mb\": 10}', 's', 'running', 1, 2)")
    conn.commit()
    conn.close()

    journal = Journal(path)
    await journal.open()
    [record] = await journal.unfinished()
    assert (record.task.task_id, record.state, record.handle) == ("old", "running", None)
    await journal.set_handle("old", "h-1")
    assert (await journal.get("old")).handle == "h-1"
    await journal.close()
    journal = Journal(path)  # opening a migrated file again changes nothing
    await journal.open()
    assert (await journal.get("old")).handle == "h-1"
    await journal.close()
