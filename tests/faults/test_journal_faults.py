"""The journal cannot write (disk full): refuse new tasks with 503, keep every result visible."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from dodoor.wire import CONTENT_TYPE, Enqueue, encode
from node_agent.app import STATE, create_app
from tests.agent.conftest import (GatedExecutor, agent_settings, all_ended, enqueue,  # noqa: F401
                                  make_task, wait_for)
from tests.daemons.conftest import http_json
from tests.faults.conftest import count, sleep_tasks


async def _status(client, tid):
    resp = await client.get(f"/v1/tasks/{tid}")
    return resp.status, (await resp.json() if resp.status == 200 else None)


async def test_failing_journal_refuses_new_tasks_and_keeps_results_in_memory(
        aiohttp_client, agent_settings):  # noqa: F811
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(), executor=ex))
    journal = client.app[STATE].agent.journal
    assert (await enqueue(client, make_task("before"))).status == 202
    await wait_for(lambda: ex.started == ["before"])
    await journal.execute("PRAGMA query_only=ON")  # every write fails from here on

    resp = await enqueue(client, make_task("during"))
    assert resp.status == 503
    assert (await resp.json())["error"]["field"] == "journal"
    ex.release("before")
    await all_ended(client.app[STATE].agent)
    code, body = await _status(client, "before")
    # the result could not be journaled, yet it is not stuck at ``running``
    assert (code, body["state"], body["exit_code"]) == (200, "succeeded", 0)
    assert body["started_ms"] is not None and body["finished_ms"] >= body["started_ms"]
    assert (await _status(client, "during"))[0] == 404
    assert (await client.get("/healthz")).status == 200
    assert ex.started == ["before"]

    await journal.execute("PRAGMA query_only=OFF")
    assert (await enqueue(client, make_task("after"))).status == 202
    await wait_for(lambda: ex.started == ["before", "after"])


def _post_enqueue(url: str, tid: str) -> int:
    task = make_task(tid, duration_ms=10.0)
    req = urllib.request.Request(url + "/internal/enqueue", data=encode(Enqueue(task, "direct")),
                                 headers={"Content-Type": CONTENT_TYPE})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_agent_with_a_full_disk_refuses_and_the_scheduler_fails_over(cluster):
    # node-0's files may not grow past 96 KiB: its journal fills after a few dozen commits
    c = cluster(agents=2, agent_fsize={0: 96 * 1024})
    ids: list[str] = []
    placed: dict[str, int] = {}
    for i in range(30):
        code, body = c.submit(0, sleep_tasks(f"f{i}-", 10, duration_ms=20.0))
        assert code == 202, body  # never refused: a 503 from node-0 fails over to node-1
        for p in body["placements"]:
            ids.append(p["id"])
            placed[p["node"]] = placed.get(p["node"], 0) + 1
    # node-0 is now full: it answers new work with 503 naming the journal, and keeps serving
    code = _post_enqueue(c.agents[0].url, "direct-1")
    assert code == 503
    assert http_json(c.agents[0].url + "/healthz")[0] == 200
    assert "refusing" in c.agents[0].log()
    states = c.wait_terminal(0, ids, timeout=60)
    assert count(states.values()) == {"succeeded": 300}
    assert placed.get("node-0", 0) >= 1 and placed["node-1"] > placed.get("node-0", 0)
    # the refusals show up as failovers in the scheduler's metrics
    with urllib.request.urlopen(c.schedulers[0].url + "/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    failovers = next(float(line.split()[-1]) for line in metrics.splitlines()
                     if line.startswith("dodoor_scheduler_failovers_total "))
    assert failovers >= 1
    print(f"placements with node-0's disk full: {placed}, failovers {failovers:g}")
