"""The per-agent enqueue outbox: coalescing, outcomes per caller, refusal, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from dodoor.messages import MessageCounter
from dodoor.resources import Task
from dodoor.wire import Enqueue, EnqueueBatch
from dodoor.service.peers import PeerError
from scheduler.outbox import BatchRefused, Outbox

URL = "http://agent"


def tasks(*ids: str) -> list[Task]:
    return [Task(i, 1.0, 1.0) for i in ids]


class FakePeers:
    """Records each request; ``gate`` (when set) holds every request until released."""

    def __init__(self) -> None:
        self.counter = MessageCounter()
        self.sent: list[tuple[str, tuple[str, ...]]] = []
        self.gate: asyncio.Event | None = None
        self.fail: PeerError | None = None
        self.fail_with: dict[str, PeerError] = {}  # a request carrying this id fails

    async def send(self, url, msg, expect=None, count=1, kind=None):
        # counted as PeerClient.send counts: once over, and not when the peer has no
        # such endpoint (404/405: nothing was delivered)
        try:
            await self._deliver(url, msg)
        except PeerError as exc:
            if exc.status not in (404, 405):
                self.counter.sent(kind or msg.TYPE, count)
            raise
        self.counter.sent(kind or msg.TYPE, count)

    async def _deliver(self, url, msg) -> None:
        ids = (msg.task.task_id,) if isinstance(msg, Enqueue) else tuple(
            t.task_id for t in msg.tasks)
        assert isinstance(msg, (Enqueue, EnqueueBatch))
        self.sent.append((url.rsplit("/", 1)[1], ids))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        for task_id in ids:
            if task_id in self.fail_with:
                raise self.fail_with[task_id]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_idle_agent_gets_each_submission_at_once_in_its_own_request():
    peers = FakePeers()
    box = Outbox(peers, "s", in_flight=1)
    await box.enqueue(URL, tasks("a"))
    await box.enqueue(URL, tasks("b", "c"))
    assert peers.sent == [("enqueue", ("a",)), ("enqueue_batch", ("b", "c"))]
    assert peers.counter.counts["enqueue"] == 3
    await box.close()


async def test_tasks_waiting_behind_a_busy_agent_share_the_next_request():
    peers = FakePeers()
    peers.gate = asyncio.Event()
    box = Outbox(peers, "s", in_flight=1)
    first = asyncio.create_task(box.enqueue(URL, tasks("a")))
    await settle()
    later = [asyncio.create_task(box.enqueue(URL, tasks(x))) for x in ("b", "c", "d")]
    other_agent = asyncio.create_task(box.enqueue("http://other", tasks("z")))
    await settle()
    assert peers.sent == [("enqueue", ("a",)), ("enqueue", ("z",))]  # one in flight per agent
    peers.gate.set()
    await asyncio.gather(first, *later, other_agent)
    assert peers.sent[2:] == [("enqueue_batch", ("b", "c", "d"))]
    assert peers.counter.counts["enqueue"] == 5 and box.requests == 3
    await box.close()


async def test_a_failed_request_fails_every_caller_it_carried_and_only_those():
    peers = FakePeers()
    peers.gate = asyncio.Event()
    box = Outbox(peers, "s", in_flight=1)
    peers.fail_with["b"] = PeerError("down", 503)
    first = asyncio.create_task(box.enqueue(URL, tasks("a")))
    await settle()
    carried = [asyncio.create_task(box.enqueue(URL, tasks(x))) for x in ("b", "c")]
    await settle()
    peers.gate.set()
    await first  # its own request went through
    results = await asyncio.gather(*carried, return_exceptions=True)
    assert [type(r) for r in results] == [PeerError, PeerError]
    assert all(r.status == 503 for r in results)
    assert peers.sent[1] == ("enqueue_batch", ("b", "c"))
    await box.close()


async def test_an_agent_without_batches_refuses_and_nothing_counts():
    peers = FakePeers()
    peers.fail = PeerError("HTTP 404", 404)
    box = Outbox(peers, "s", in_flight=2)
    with pytest.raises(BatchRefused):
        await box.enqueue(URL, tasks("a", "b"))
    assert peers.counter.counts["enqueue"] == 0
    with pytest.raises(PeerError) as err:  # a single enqueue's 404 is a plain failure
        await box.enqueue(URL, tasks("c"))
    assert not isinstance(err.value, BatchRefused)
    await box.close()


async def test_a_caller_cancelled_before_its_turn_sends_nothing():
    peers = FakePeers()
    peers.gate = asyncio.Event()
    box = Outbox(peers, "s", in_flight=1)
    first = asyncio.create_task(box.enqueue(URL, tasks("a")))
    await settle()
    gone = asyncio.create_task(box.enqueue(URL, tasks("b")))
    kept = asyncio.create_task(box.enqueue(URL, tasks("c")))
    await settle()
    gone.cancel()
    peers.gate.set()
    await asyncio.gather(first, kept)
    assert peers.sent == [("enqueue", ("a",)), ("enqueue", ("c",))]
    await box.close()


async def test_close_fails_the_waiting_callers():
    peers = FakePeers()
    peers.gate = asyncio.Event()
    box = Outbox(peers, "s", in_flight=1)
    first = asyncio.create_task(box.enqueue(URL, tasks("a")))
    await settle()
    waiting = asyncio.create_task(box.enqueue(URL, tasks("b")))
    await settle()
    await box.close()
    for caller in (first, waiting):
        with pytest.raises(PeerError, match="shutting down"):
            await caller
    # the request in flight may have arrived; the waiting task was never sent
    assert first.exception().outcome_unknown
    assert waiting.exception().refused


async def test_an_unknown_outcome_reaches_every_caller_the_request_carried():
    peers = FakePeers()
    peers.gate = asyncio.Event()
    box = Outbox(peers, "s", in_flight=1)
    timeout = PeerError("timed out", outcome_unknown=True)
    peers.fail_with["b"] = timeout
    first = asyncio.create_task(box.enqueue(URL, tasks("a")))
    await settle()
    carried = [asyncio.create_task(box.enqueue(URL, tasks(x))) for x in ("b", "c")]
    await settle()
    peers.gate.set()
    await first
    results = await asyncio.gather(*carried, return_exceptions=True)
    assert results == [timeout, timeout]  # each caller settles it with the agent
    assert peers.sent == [("enqueue", ("a",)), ("enqueue_batch", ("b", "c"))]
    await box.close()


def test_in_flight_must_be_positive():
    with pytest.raises(ValueError, match="in_flight"):
        Outbox(FakePeers(), "s", in_flight=0)


async def test_the_enqueue_carries_each_tasks_estimate_and_none_while_all_are_declared():
    got = []

    class Recording(FakePeers):
        async def _deliver(self, url, msg) -> None:
            got.append(msg)

    guess = {"a": 50.0, "c": 70.0}
    box = Outbox(Recording(), "s", in_flight=1, estimate=lambda t: guess.get(t.task_id))
    await box.enqueue(URL, tasks("a"))
    await box.enqueue(URL, tasks("b"))
    await box.enqueue(URL, tasks("b", "c"))
    await box.enqueue(URL, tasks("b", "d"))
    assert [m.estimate_ms for m in got[:2]] == [50.0, None]
    # a task without an estimate counts its declared duration (Task's default, 1000 ms)
    assert got[2].estimates_ms == (1000.0, 70.0) and got[3].estimates_ms == ()
    await box.close()
