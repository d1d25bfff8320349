"""The journal's group-commit write path: one drain per busy spell, no lost or hung writes."""

import asyncio
import threading

import pytest

from node_agent.journal import Journal
from tests.agent.conftest import make_task


async def test_a_burst_of_writes_submits_few_drains_and_settles_all(tmp_path):
    j = Journal(tmp_path / "w.sqlite")
    await j.open()
    submitted = []
    real_submit = j._pool.submit

    def counting_submit(fn, *args):
        submitted.append(fn)
        return real_submit(fn, *args)

    j._pool.submit = counting_submit  # type: ignore[method-assign]
    n = 200
    results = await asyncio.gather(*(j.insert(make_task(f"t{i}"), "s", "queued", 1.0)
                                     for i in range(n)))
    assert all(results)
    drains = sum(1 for fn in submitted if getattr(fn, "__name__", "") == "_drain")
    assert 1 <= drains < n  # the burst queued behind one drain instead of one each
    assert await j.counts() == {"queued": n}
    await j.close()


async def test_writes_from_the_loop_racing_the_journal_thread_are_never_lost(tmp_path):
    # Writes trickle in while drains run: each must be taken by some drain and answered.
    j = Journal(tmp_path / "r.sqlite")
    await j.open()
    for i in range(300):
        await asyncio.gather(j.mark_running(f"x{i}", 1.0), j.insert(make_task(f"t{i}"), "s", "queued", 1.0))
        if i % 7 == 0:
            await asyncio.sleep(0)
    assert await j.counts() == {"queued": 300}
    await j.close()


async def test_a_write_after_close_fails_every_time_instead_of_hanging(tmp_path):
    j = Journal(tmp_path / "c.sqlite")
    await j.open()
    await j.close()
    for _ in range(2):  # the second must not wait on a drain the first could not submit
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(j.mark_running("a", 1.0), timeout=5)


async def test_results_reach_the_loop_of_each_writer(tmp_path):
    # Writers on two event loops (two threads) share one journal; each gets its own answers.
    j = Journal(tmp_path / "l.sqlite")
    await j.open()
    out: dict[str, list[bool]] = {}

    def other_loop() -> None:
        async def go() -> list[bool]:
            return list(await asyncio.gather(*(j.insert(make_task(f"o{i}"), "s", "queued", 1.0)
                                               for i in range(50))))
        out["other"] = asyncio.run(go())

    thread = threading.Thread(target=other_loop)
    thread.start()
    mine = await asyncio.gather(*(j.insert(make_task(f"m{i}"), "s", "queued", 1.0) for i in range(50)))
    await asyncio.to_thread(thread.join)
    assert all(mine) and out["other"] == [True] * 50
    assert await j.counts() == {"queued": 100}
    await j.close()


async def test_one_failing_write_in_a_shared_commit_spoils_only_itself(tmp_path):
    from node_agent.journal import JournalError

    j = Journal(tmp_path / "f.sqlite")
    await j.open()

    def bad(conn):
        return conn.execute("INSERT INTO no_such_table VALUES (1)")

    writes = [j.insert(make_task(f"a{i}"), "s", "queued", 1.0) for i in range(20)]
    writes.insert(10, j._write(bad))
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(results[10], JournalError)
    assert results[:10] + results[11:] == [True] * 20
    assert await j.counts() == {"queued": 20}
    await j.close()
    j3 = Journal(tmp_path / "f.sqlite")
    await j3.open()
    assert await j3.counts() == {"queued": 20}
    assert (await j3.get("a3")).state == "queued"
    await j3.close()
