"""What an agent does with an id it already holds (Journal.accept_many) and the lease."""

from __future__ import annotations

import dataclasses

from dodoor.clock import ManualClock
from node_agent.journal import CONFLICT, DUPLICATE, NEW, RERUN, Journal
from node_agent.lease import Lease
from tests.agent.conftest import make_task


async def test_accept_many_tells_new_duplicate_rerun_and_conflict(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    await journal.open()
    try:
        a, b = make_task("a"), make_task("b")
        assert await journal.accept_many([a, b], "s", 1.0) == [NEW, NEW]
        assert await journal.accept_many([a], "s2", 2.0) == [DUPLICATE]
        other = dataclasses.replace(a, duration_ms=a.duration_ms + 1)
        assert await journal.accept_many([other], "s", 3.0) == [CONFLICT]
        assert (await journal.get("a")).task == a  # the held task is untouched
        # a fenced life ends b lost; the client resubmits it and it runs again
        assert await journal.mark_lost_unfinished(4.0, "declared dead") == ["a", "b"]
        assert await journal.accept_many([b], "s3", 5.0) == [RERUN]
        rec = await journal.get("b")
        assert (rec.state, rec.scheduler_id, rec.queued_ms, rec.reason) == ("queued", "s3", 5.0, None)
        assert (await journal.get("a")).state == "lost"
        assert await journal.all_ids() == ["a", "b"]
    finally:
        await journal.close()


async def test_the_incarnation_is_durable_and_renewed_only_on_request(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    await journal.open()
    first = await journal.incarnation()
    assert await journal.incarnation() == first
    await journal.close()
    journal = Journal(tmp_path / "j.sqlite")
    await journal.open()
    try:
        assert await journal.incarnation() == first
        renewed = await journal.incarnation(renew=True)
        assert renewed != first and await journal.incarnation() == renewed
    finally:
        await journal.close()


def test_a_lease_runs_from_the_report_it_answers_and_is_revoked_by_a_fence():
    clock = ManualClock(1000.0)
    lease = Lease(clock, required=True)
    assert not lease.valid()  # nothing answered yet
    lease.grant(sent_ms=900.0, lease_ms=3000.0)
    clock.advance(2899)
    assert lease.valid()
    clock.advance(1)  # 3000 ms after the report was sent, before the store can expire it
    assert not lease.valid()
    lease.grant(sent_ms=clock.now_ms(), lease_ms=3000.0)
    lease.revoke()
    assert not lease.valid()
    assert Lease(clock, required=False).valid()


async def test_a_confirmed_reservation_is_queued_and_started_at_its_confirm(tmp_path):
    """Sparrow's wait for a confirm is the reservation's, not the task's: the task's
    queued_ms is the confirm, as the evaluation's submit→placed expects."""
    journal = Journal(tmp_path / "j.sqlite")
    await journal.open()
    try:
        assert await journal.reserve(make_task("r"), "s", "http://127.0.0.1:1/c", 10.0)
        await journal.mark_confirmed("r", 250.0)
        rec = await journal.get("r")
        assert (rec.state, rec.queued_ms, rec.started_ms) == ("running", 250.0, 250.0)
    finally:
        await journal.close()
