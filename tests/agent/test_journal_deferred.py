"""A task's end is deferred (``end_delay_ms``): it rides with the next accept's commit
or commits alone once the delay is over, and is never lost (close commits it)."""

import asyncio

import pytest

from dodoor.errors import ValidationError
from dodoor.taskstates import QUEUED, SUCCEEDED
from node_agent.journal import Journal
from node_agent.settings import AgentSettings
from tests.agent.conftest import make_task

LONG_MS = 60_000.0  # longer than any test: an end committed meanwhile rode with another write


async def _journal(tmp_path, end_delay_ms: float, name: str = "d.sqlite") -> Journal:
    j = Journal(tmp_path / name, end_delay_ms=end_delay_ms)
    await j.open()
    return j


def _count_drains(journal: Journal) -> list[int]:
    drains = [0]
    real_submit = journal._pool.submit

    def counting_submit(fn, *args):
        if getattr(fn, "__name__", "") == "_drain":
            drains[0] += 1
        return real_submit(fn, *args)

    journal._pool.submit = counting_submit  # type: ignore[method-assign]
    return drains


async def test_an_end_rides_with_the_next_accept_in_one_commit(tmp_path):
    j = await _journal(tmp_path, LONG_MS)
    await j.accept_many([make_task("a")], "s", 1.0)
    drains = _count_drains(j)
    ended = j.finish_soon("a", SUCCEEDED, 5.0, 0, None, "", started_ms=2.0)
    for _ in range(3):
        await asyncio.sleep(0)
    assert not ended.done() and drains[0] == 0  # the end alone starts no commit
    assert (await j.status("a")).state == QUEUED
    await j.accept_many([make_task("b")], "s", 6.0)
    assert ended.done()  # settled by the accept's commit, long before its delay
    assert drains[0] == 1
    a = await j.status("a")
    assert (a.state, a.started_ms, a.finished_ms) == (SUCCEEDED, 2.0, 5.0)
    await j.close()


async def test_ends_alone_commit_together_once_the_delay_is_over(tmp_path):
    j = await _journal(tmp_path, 20.0)
    await j.accept_many([make_task("a"), make_task("b")], "s", 1.0)
    drains = _count_drains(j)
    ends = [j.finish_soon(t, SUCCEEDED, 5.0, 0, None, "") for t in ("a", "b")]
    await asyncio.wait_for(asyncio.gather(*ends), timeout=5)
    assert drains[0] == 1  # one timer, one commit for both
    assert {(await j.status(t)).state for t in ("a", "b")} == {SUCCEEDED}
    await j.close()


async def test_close_commits_a_deferred_end(tmp_path):
    j = await _journal(tmp_path, LONG_MS)
    await j.accept_many([make_task("a")], "s", 1.0)
    ended = j.finish_soon("a", SUCCEEDED, 5.0, 0, None, "")
    await j.close()
    assert ended.done() and ended.exception() is None
    again = await _journal(tmp_path, LONG_MS)
    assert (await again.status("a")).state == SUCCEEDED
    await again.close()


async def test_no_delay_commits_an_end_at_once(tmp_path):
    j = await _journal(tmp_path, 0.0)
    await j.accept_many([make_task("a")], "s", 1.0)
    drains = _count_drains(j)
    await asyncio.wait_for(j.finish_soon("a", SUCCEEDED, 5.0, 0, None, ""), timeout=5)
    assert drains[0] == 1
    await j.close()


def test_the_delay_is_bounded(tmp_path):
    with pytest.raises(ValueError):
        Journal(tmp_path / "x.sqlite", end_delay_ms=-1.0)
    with pytest.raises(ValidationError, match="journal_end_delay_ms"):
        AgentSettings(journal_end_delay_ms=5000.0)
