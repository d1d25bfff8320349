"""State reports to the load store: on change, coalesced, plus a heartbeat.

A change only sets a flag; the loop sends the *current* state at most once per
``interval_ms``, so a burst of enqueues and completions costs one report, and
sends anyway every ``heartbeat_ms`` so the load store can tell a live idle
agent from a dead one. Sending never blocks the queue: it runs in its own
loop, and an unreachable load store is retried quietly (one log line per
outage) on the next tick.

The load store answers each report with a ``ReportAck``: when no scheduler
scores from node load (probing or random policies) it says so, and the agent
stops reporting changes and sends only heartbeats — which still carry the full
state — until an answer asks for changes again. Every answer also goes to
``on_answer`` (the agent: lease, fence, reported ids; see :mod:`node_agent.lease`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Awaitable, Callable, Optional

import aiohttp

from dodoor.messages import MessageCounter
from dodoor.errors import DecodeError
from dodoor.wire import CONTENT_TYPE, NodeState, ReportAck, decode, encode

log = logging.getLogger(__name__)


class Reporter:
    """Sends ``NodeState`` built by ``build`` to ``{loadstore_url}/internal/node_state``."""

    def __init__(self, session: aiohttp.ClientSession, loadstore_url: str,
                 build: Callable[[int], Awaitable[NodeState]], counter: MessageCounter,
                 interval_ms: float = 100.0, heartbeat_ms: float = 1000.0,
                 timeout_ms: float = 1000.0, headers: dict[str, str] | None = None,
                 on_answer: Optional[Callable[[ReportAck, float, NodeState], Awaitable[None]]] = None,
                 clock_ms: Callable[[], float] | None = None) -> None:
        self.session = session
        self.url = loadstore_url.rstrip("/") + "/internal/node_state"
        self.build = build
        self.counter = counter
        self.interval_s = interval_ms / 1000.0
        self.heartbeat_s = heartbeat_ms / 1000.0
        self.timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000.0)
        self.headers = {"Content-Type": CONTENT_TYPE, **(headers or {})}
        self.seq = 0
        self.sent = 0
        self.failures = 0
        self.reachable: bool | None = None
        self.load_wanted = True  # until the load store says otherwise
        self.on_answer = on_answer
        self._now_ms = clock_ms or (lambda: asyncio.get_running_loop().time() * 1000.0)
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """The node's state changed; report it soon."""
        self._changed.set()

    async def run(self) -> None:
        """Report forever (cancel to stop); the first report, at once, registers the node."""
        self._changed.set()
        while True:
            idle = not self.load_wanted
            if idle:  # changes are not wanted: only the heartbeat is due
                await asyncio.sleep(self.heartbeat_s)
            else:
                try:
                    async with asyncio.timeout(self.heartbeat_s):
                        await self._changed.wait()
                except TimeoutError:
                    idle = True
            self._changed.clear()
            await self.send_once(heartbeat=idle)
            # Changes during this pause are folded into the next report.
            await asyncio.sleep(self.interval_s)

    async def send_once(self, heartbeat: bool = False) -> bool:
        """Send one report; a heartbeat (nothing changed) is counted apart."""
        self.seq += 1
        msg = await self.build(self.seq)
        if heartbeat:
            msg = dataclasses.replace(msg, heartbeat=True)
        body = encode(msg)
        sent_ms = self._now_ms()
        try:
            async with self.session.post(self.url, data=body, headers=self.headers,
                                         timeout=self.timeout) as resp:
                if resp.status >= 300:
                    raise aiohttp.ClientResponseError(
                        resp.request_info, resp.history, status=resp.status, message=resp.reason or "")
                answer = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failures += 1
            if self.reachable is not False:
                log.warning("load store %s unreachable (%s); retrying quietly", self.url, exc)
            self.reachable = False
            return False
        self.counter.sent("heartbeat" if heartbeat else "node_state", nbytes=len(body))
        ack = self._take_answer(answer)
        if ack is not None and self.on_answer is not None:
            try:
                await self.on_answer(ack, sent_ms, msg)
            except Exception:  # a bug there must not end reporting (and with it liveness)
                log.exception("handling the load store's answer failed")
            if ack.fenced:
                self._changed.set()  # report the new life at once
        self.sent += 1
        if self.reachable is False:
            log.info("load store %s reachable again", self.url)
        self.reachable = True
        return True

    def _take_answer(self, answer: bytes) -> ReportAck | None:
        """Follow the load store's ``ReportAck``. An empty answer (an older store, which
        never fences) changes nothing and grants a lease of three heartbeats."""
        if not answer:
            return ReportAck(self.load_wanted, lease_ms=3 * self.heartbeat_s * 1000.0)
        try:
            ack = decode(answer, ReportAck)
        except DecodeError as exc:
            log.warning("load store answered a report with %d unreadable bytes: %s", len(answer), exc)
            return None
        wanted = ack.wants_load
        if wanted != self.load_wanted:
            log.info("load store %s state reports on change", "wants" if wanted else "no longer wants")
            self.load_wanted = wanted
        return ack
