"""A real ``dodoor agent`` process on a journal with damaged and expired rows.

Before issue 13 (finding 8) one unreadable row made ``resume`` raise and the
agent exit at start; a journal also kept every result until the disk filled.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from node_agent.journal import Journal
from tests.agent.conftest import make_task
from tests.agent.test_journal_unreadable import BAD_ROWS, write_journal
from tests.daemons.conftest import free_port, http_json
from tests.faults.conftest import poll, start_daemon


async def _add_ancient_result(path) -> None:
    j = Journal(path)
    await j.open()
    await j.insert(make_task("ancient"), "sched-0", "queued", 500.0)
    await j.finish("ancient", "succeeded", 1000.0, 0, None, "")  # in 1970: long expired
    await j.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_agent_process_starts_on_a_journal_with_unreadable_rows(tmp_path):
    journal = tmp_path / "node-0.sqlite"
    asyncio.run(write_journal(journal, finished_at_ms=time.time() * 1000.0))
    asyncio.run(_add_ancient_result(journal))
    ls_port = free_port()
    loadstore = start_daemon(["loadstore", "--port", str(ls_port)], ls_port, {}, tmp_path)
    port = free_port()
    agent = None
    try:
        agent = start_daemon(
            ["agent", "--port", str(port), "--id", "node-0", "--loadstore", loadstore.url,
             "--executor", "sleep", "--cores", "2", "--memory-mb", "1000", "--disk-mb", "0",
             "--slots", "2", "--journal", str(journal), "--report-interval-ms", "50"],
            port, {}, tmp_path)
        assert http_json(agent.url + "/healthz")[0] == 200

        def state(task_id: str) -> tuple[int, dict]:
            return http_json(f"{agent.url}/v1/tasks/{task_id}")

        # the readable rows resume and run to the end
        poll(lambda: all(state(t)[1].get("state") == "succeeded" for t in ("good-0", "good-1")),
             20, what="the readable tasks succeed")
        for task_id, (_, reason) in BAD_ROWS.items():
            code, body = state(task_id)
            assert code == 200 and body["state"] == "failed", body
            assert body["reason"].startswith(reason), body
        code, body = state("done-bad")  # finished before its row broke: its result stands
        assert (code, body["state"], body["exit_code"]) == (200, "succeeded", 0)
        # the default retention (7 days) forgets a result from 1970 right after the start
        expired = poll(lambda: (lambda r: r[0] == 404 and r)(state("ancient")), 10,
                       what="the ancient result expires")
        assert "its result expired (finished results are kept for 7 days" \
            in expired[1]["error"]["reason"]
        assert state("done-ok")[0] == 200
        # the load store hears of the agent, with nothing left queued or running
        poll(lambda: http_json(loadstore.url + "/v1/nodes")[1]["nodes"], 10, what="registered")
        text = agent.log()
        assert [text.count(f"task {t} cannot be resumed, marked failed") for t in BAD_ROWS] == [1] * 4
        assert agent.stop() == 0
    finally:
        if agent is not None:
            agent.stop()
        loadstore.stop()
