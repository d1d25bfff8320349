"""Claims at the load store: coalesced requests, each caller its own verdict, faults."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from dodoor.service.peers import PeerError
from dodoor.taskindex import BUSY, NEW, PLACED, UNKNOWN
from dodoor.wire import Lookup, LookupReply
from scheduler.claims import Claims

STORE = "http://store"


class FakeStore:
    """Answers claims: ids starting with ``p`` are placed on node-p, ``b`` busy, the
    rest new (claimed now). ``gate`` holds every request until set; a request
    carrying an id in ``fail_ids`` fails."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []
        self.gate: asyncio.Event | None = None
        self.fail_ids: set[str] = set()
        self.agent_asks = 0

    async def send(self, url, msg, expect=None, count=1, kind=None):
        assert isinstance(msg, Lookup)
        if not url.startswith(STORE):  # Claims.ask_agents: no agent holds anything
            self.agent_asks += 1
            return LookupReply(tuple(UNKNOWN for _ in msg.task_ids), (), ())
        assert msg.claim and url == STORE + "/internal/lookup"
        self.sent.append(msg.task_ids)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_ids & set(msg.task_ids):
            raise PeerError(f"{url}: connection reset")
        outcomes = tuple(PLACED if i.startswith("p") else BUSY if i.startswith("b") else NEW
                         for i in msg.task_ids)
        nodes = tuple("node-p" if o == PLACED else "" for o in outcomes)
        owners = tuple("other" if o == BUSY else "me" for o in outcomes)
        return LookupReply(outcomes, nodes, owners)


def make_claims(store: FakeStore, agents: int = 0) -> Claims:
    view = SimpleNamespace(node_ids=[f"n{i}" for i in range(agents)],
                           urls=[f"http://agent{i}" for i in range(agents)])
    return Claims(store, SimpleNamespace(loadstore_url=STORE), view, "sched/1")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def verdict(task_id: str) -> tuple[str, str, str]:
    if task_id.startswith("p"):
        return (PLACED, "node-p", "me")
    return (BUSY, "", "other") if task_id.startswith("b") else (NEW, "", "me")


async def test_callers_waiting_behind_a_request_share_the_next_and_get_their_own_verdicts():
    store = FakeStore()
    store.gate = asyncio.Event()
    claims = make_claims(store)
    callers = {}
    for ids in [("a1",), ("p2",), ("b3", "a4"), ("p5",), ("a6", "a1x")]:
        callers[ids] = asyncio.create_task(claims.claim(list(ids)))
        await settle()
    # the first caller left at once, alone; the rest wait for the request in flight
    assert store.sent == [("a1",)]
    store.gate.set()
    answers = {ids: await task for ids, task in callers.items()}
    assert store.sent[1:] == [("p2", "b3", "a4", "p5", "a6", "a1x")]
    assert claims.requests == 2 and claims.skipped == 0
    for ids, answer in answers.items():  # each caller gets its own ids' verdicts, no others
        assert answer == {i: verdict(i) for i in ids}
    await claims.close()


async def test_a_failed_request_sends_only_its_callers_to_the_agents():
    store = FakeStore()
    store.gate = asyncio.Event()
    store.fail_ids = {"bad"}
    claims = make_claims(store, agents=2)
    fine = asyncio.create_task(claims.claim(["p2"]))
    await settle()
    failing = asyncio.create_task(claims.claim(["bad", "a1"]))
    await settle()
    store.gate.set()
    # no agent holds the ids: the failed claim's caller learns that from the agents
    assert await failing == {}
    assert await fine == {"p2": verdict("p2")}
    assert store.sent == [("p2",), ("bad", "a1")]
    assert claims.skipped == 1 and store.agent_asks == 2
    await claims.close()


async def test_shutdown_answers_every_caller_in_flight_and_waiting():
    store = FakeStore()
    store.gate = asyncio.Event()  # never set: the store does not answer before shutdown
    claims = make_claims(store)
    callers = []
    for i in range(5):
        callers.append(asyncio.create_task(claims.claim([f"a{i}"])))
        await settle()
    assert store.sent == [("a0",)]  # a1..a4 wait for the request in flight
    await claims.close()
    # no verdict from the store: each falls back to asking the agents (none here)
    assert await asyncio.wait_for(asyncio.gather(*callers), 2) == [{}] * 5
    assert claims.skipped == 5


async def test_ids_made_here_are_not_looked_up_at_the_agents_when_the_store_fails():
    store = FakeStore()
    store.fail_ids = {"m1"}
    claims = make_claims(store, agents=3)
    assert await claims.claim(["m1"], made_here=True) == {}
    claims.claiming = lambda: False  # the store is known to be unreachable
    assert await claims.claim(["m2"], made_here=True) == {}
    # no one can hold an id made here: skipped twice, and no agent was asked
    assert claims.skipped == 2 and store.agent_asks == 0 and store.sent == [("m1",)]
    assert await claims.claim(["g1"]) == {}  # a given id still asks the agents
    assert store.agent_asks == 3
    await claims.close()
