"""Every daemon's /metrics by Prometheus' conventions, on a small live cluster in-process.

Tasks are placed and run on the ``cluster`` of conftest.py, then each
``/metrics`` is read as Prometheus would read it. ``promtool check metrics``
runs on each when promtool is installed (Debian's ``prometheus`` package;
.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import re
import subprocess

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.conftest import AUTH, PROMTOOL, TASK_S, needs_promtool, run_tasks, scrape_all

# names these metrics had before they followed the conventions (issue 16)
OLD_NAMES = ("dodoor_scheduler_placements ", "dodoor_scheduler_failovers ",
             "dodoor_loadstore_placements ", "dodoor_loadstore_batch_b", "dodoor_agent_committed{",
             "dodoor_agent_messages_total")


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(text: str, name: str, **labels: str) -> float:
    found = [s.value for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert found, f"no sample {name}{labels}"
    return sum(found)


async def test_every_daemon_follows_the_naming_conventions(cluster):
    await run_tasks(cluster, 6, "conv")
    for daemon, text in (await scrape_all(cluster)).items():
        fams = families(text)
        for name, family in fams.items():
            # counters only go up and say so: TYPE counter and samples named *_total
            if family.type == "counter":
                assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
            if not name.startswith("dodoor_"):
                continue
            # base units, one per name: no ms, MB or a bare b
            assert not re.search(r"_(ms|mb|mib|kb|b|sec|secs|min)(_|$)", name), (daemon, name)
            if family.type == "histogram":
                assert name.endswith("_seconds"), (daemon, name)
        for old in OLD_NAMES:
            assert old not in text, (daemon, old)
        assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
        messages = fams["dodoor_messages"]
        assert messages.type == "counter"
        assert {tuple(sorted(s.labels)) for s in messages.samples} == {("direction", "type")}
        assert {s.labels["direction"] for s in messages.samples} == {"sent", "received"}, daemon


@needs_promtool
async def test_promtool_check_metrics_passes_on_every_daemon(cluster):
    await run_tasks(cluster, 4, "lint")
    for daemon, text in (await scrape_all(cluster)).items():
        proc = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                              text=True, timeout=60)
        # promtool prints each problem and exits non-zero; a clean exposition says nothing
        assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), (
            daemon, proc.stdout, proc.stderr)


async def test_histograms_and_units_after_placing_and_running(cluster):
    await run_tasks(cluster, 8, "hist")
    texts = await scrape_all(cluster)
    sched = texts["scheduler"]
    # one batch of 8: 8 observations, each from one request's latency
    assert value(sched, "dodoor_scheduler_submit_to_placed_seconds_count") == 8
    assert value(sched, "dodoor_scheduler_snapshot_age_at_use_seconds_count") == 8
    assert value(sched, "dodoor_scheduler_placements_total") == 8
    agents = [texts["agent-0"], texts["agent-1"]]
    assert sum(value(t, "dodoor_agent_task_run_seconds_count") for t in agents) == 8
    assert sum(value(t, "dodoor_agent_queue_wait_seconds_count") for t in agents) == 8
    run_s = sum(value(t, "dodoor_agent_task_run_seconds_sum") for t in agents)
    assert 8 * TASK_S <= run_s < 8 * TASK_S + 5.0
    assert sum(value(t, "dodoor_agent_tasks_total", state="succeeded") for t in agents) == 8
    # capacity in base units: 1024 MiB in bytes
    assert value(agents[0], "dodoor_agent_capacity_memory_bytes") == 1024 * 2**20
    assert value(agents[0], "dodoor_agent_committed_memory_bytes") == 0


async def test_each_message_is_sent_once_and_received_once(cluster):
    await run_tasks(cluster, 6, "dir")

    def count(texts: dict[str, str], direction: str, kind: str) -> float:
        return sum(value(t, "dodoor_messages_total", direction=direction, type=kind)
                   for t in texts.values() if f'direction="{direction}",type="{kind}"' in t)

    async def balanced() -> bool:
        texts = await scrape_all(cluster)
        # types both ends count, each seen at least once in this run (with b=4 and 6
        # tasks a scheduler need not have flushed deltas yet: not among them)
        for kind in ("enqueue", "register", "snapshot", "lookup", "task_status", "node_state"):
            sent = count(texts, "sent", kind)
            if sent == 0 or sent != count(texts, "received", kind):
                return False
        return True

    for _ in range(100):  # a snapshot or heartbeat may be on the wire during a scrape
        if await balanced():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("sent and received counts never matched")


async def test_an_idle_cluster_grows_the_age_gauge_but_not_the_histogram(cluster):
    await run_tasks(cluster, 3, "idle")
    before = (await scrape_all(cluster))["scheduler"]
    age0 = value(before, "dodoor_scheduler_snapshot_age_seconds")
    cluster.scheduler_clock.advance(600_000)  # ten idle minutes on the scheduler's clock
    after = (await scrape_all(cluster))["scheduler"]
    # the gauge grows with idleness (for dashboards) ...
    assert value(after, "dodoor_scheduler_snapshot_age_seconds") == pytest.approx(age0 + 600)
    # ... but what alerts read is observed only when placements decide
    for sample in ("_count", "_sum"):
        name = "dodoor_scheduler_snapshot_age_at_use_seconds" + sample
        assert value(after, name) == value(before, name)
    # and the next placement does see the ten-minute-old snapshot
    await run_tasks(cluster, 1, "late")
    late = (await scrape_all(cluster))["scheduler"]
    assert value(late, "dodoor_scheduler_snapshot_age_at_use_seconds_bucket", le="300.0") == 3
    assert value(late, "dodoor_scheduler_snapshot_age_at_use_seconds_bucket", le="1800.0") == 4


async def test_the_nodes_views_say_what_they_show(cluster):
    async with aiohttp.ClientSession() as session:
        async with session.get(cluster.scheduler + "/v1/nodes", headers=AUTH) as resp:
            view = await resp.json()
        async with session.get(cluster.loadstore + "/v1/nodes", headers=AUTH) as resp:
            store = await resp.json()
    assert "last snapshot" in view["about"] and "refresh_ms" in view["about"]
    assert view["snapshot_age_ms"] is not None
    assert "last report" in store["about"]
    assert all("report_age_ms" in node for node in store["nodes"])
