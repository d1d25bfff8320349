"""The load-store daemon: ``create_app(settings)`` (protocol: docs/protocol.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from dodoor.clock import Clock, MonotonicClock
from dodoor.messages import MessageCounter
from dodoor.taskindex import TaskIndex
from dodoor.wire import (Deltas, Lookup, LookupReply, NodeState, Register, ReportAck, Snapshot,
                         encode)
from dodoor.service.peers import PeerClient, PeerError
from dodoor.service.auth_token import auth_headers
from dodoor.service.http import (BackgroundTasks, daemon_app, json_error, metrics_handler,
                                 read_message, wire_response)
from scheduler.loadstore.state import LoadStoreState
from scheduler.loadstore.metrics import make_registry
from scheduler.loadstore.rebalance import Mover
from scheduler.loadstore.membership import MembershipFile
from scheduler.loadstore.settings import LoadStoreSettings

log = logging.getLogger(__name__)


class Pusher:
    """Pushes snapshots: one POST per scheduler, concurrent, each with a timeout.

    Requests coalesce: while a push is in flight, further triggers make one
    more push afterwards, never a queue of them. A failing scheduler only
    misses this push; it is forgotten after ``forget_after_failures`` in a row.
    """

    def __init__(self, store: LoadStoreState, settings: LoadStoreSettings) -> None:
        self.store = store
        self.settings = settings
        self.schedulers: dict[str, str] = {}  # id -> url
        self.wants_load: dict[str, bool] = {}  # id -> scores from node load
        self.failures: dict[str, int] = {}
        self.peers: PeerClient | None = None
        self._wanted: set[str] = set()
        self._event = asyncio.Event()
        self.pushes = 0
        self.last_push_ms = store.clock.now_ms()  # when the last snapshot was taken
        self.push_failures = 0  # ever, for /metrics (``failures`` counts runs per scheduler)

    def register(self, msg: Register) -> None:
        if self.schedulers.get(msg.component_id) != msg.url:
            log.info("scheduler %s registered at %s", msg.component_id, msg.url)
        self.schedulers[msg.component_id] = msg.url.rstrip("/")
        self.wants_load[msg.component_id] = msg.wants_load
        self.failures[msg.component_id] = 0
        if self.store.publisher is not None:
            self.store.publisher.resync(msg.component_id)  # it may hold nothing of ours
        self.request({msg.component_id})

    def load_wanted(self) -> bool:
        """Do agents need to report each state change?

        Only while some registered scheduler scores from node load; with none
        registered yet the answer is yes, since one may register at any moment and
        its first snapshot should be fresh.
        """
        return not self.schedulers or any(self.wants_load.get(sid, True)
                                          for sid in self.schedulers)

    def request(self, targets: set[str] | None = None) -> None:
        """Ask for a push to ``targets`` (all schedulers when None)."""
        self._wanted |= set(self.schedulers) if targets is None else targets
        self._event.set()

    async def run(self) -> None:
        while True:
            await self._event.wait()
            self._event.clear()
            wanted, self._wanted = self._wanted, set()
            targets = [(sid, self.schedulers[sid]) for sid in sorted(wanted)
                       if sid in self.schedulers]
            if not targets:
                continue
            self.last_push_ms = self.store.clock.now_ms()
            if self.store.publisher is None:
                data = encode(self.store.snapshot())
                await asyncio.gather(*(self._push(sid, url, data) for sid, url in targets))
                continue
            updates = self.store.updates_for([sid for sid, _ in targets])
            await asyncio.gather(*(
                self._push(sid, url, encode(updates[sid]),
                           "/internal/snapshot" if isinstance(updates[sid], Snapshot)
                           else "/internal/snapshot_delta")
                for sid, url in targets))

    async def _push(self, sid: str, url: str, data: bytes,
                    path: str = "/internal/snapshot") -> None:
        assert self.peers is not None
        self.peers.counter.sent("snapshot")
        self.pushes += 1
        try:
            await self.peers.post_raw(url + path, data)
        except PeerError as exc:
            if self.store.publisher is not None:
                # lost or refused: whatever it holds, the next one must be full
                self.store.publisher.resync(sid)
                if exc.status == 409:
                    log.info("scheduler %s asked for a resync", sid)
                    self.request({sid})
                    return
            self.push_failures += 1  # a 409 above is the protocol's resync, not a failure
            n = self.failures.get(sid, 0) + 1
            self.failures[sid] = n
            log.warning("snapshot push to %s failed (%d in a row): %s", sid, n, exc)
            if n >= self.settings.forget_after_failures:
                log.warning("forgetting scheduler %s", sid)
                self.schedulers.pop(sid, None)
                self.failures.pop(sid, None)
                self.wants_load.pop(sid, None)
                if self.store.publisher is not None:
                    self.store.publisher.forget(sid)
            return
        self.failures[sid] = 0


class LoadStoreApp:
    def __init__(self, settings: LoadStoreSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.instance = uuid.uuid4().hex
        self.counter = MessageCounter()
        self.membership_file = MembershipFile(settings.state_file)
        self.store = LoadStoreState(settings.b, settings.dead_after_ms, clock,
                                    settings.adaptive_b_target_ms, settings.delta_snapshots,
                                    epoch=self.instance,
                                    membership=self.membership_file.load(),
                                    index=TaskIndex(clock, settings.index_entries,
                                                    settings.claim_ttl_ms))
        self.pusher = Pusher(self.store, settings)
        self.mover = (Mover(self.store, self.counter, settings.rebalance_min_queue,
                            settings.rebalance_least_wait_ms, settings.push_timeout_ms,
                            auth_headers(settings.token))
                      if settings.rebalance else None)
        self._saving = asyncio.Lock()

    async def save_membership(self) -> None:
        """Persist joins, returns and fences before anyone acts on them."""
        async with self._saving:
            if not self.store.membership_dirty:
                return
            self.store.membership_dirty = False
            try:
                await asyncio.to_thread(self.membership_file.save, self.store.membership)
            except Exception:
                self.store.membership_dirty = True
                raise


LOADSTORE = web.AppKey("loadstore", LoadStoreApp)


def create_app(settings: LoadStoreSettings, clock: Clock | None = None,
               expiry_loop: bool = True) -> web.Application:
    """The load store's aiohttp application.

    ``expiry_loop=False`` leaves dead-node expiry to explicit ``expire_now``
    calls (tests on a ManualClock).
    """
    app = daemon_app(settings.token, settings.max_body_bytes)
    ls = LoadStoreApp(settings, clock or MonotonicClock())
    app[LOADSTORE] = ls
    registry = make_registry(ls)

    async def background(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        ls.pusher.peers = PeerClient(session, ls.counter, settings.push_timeout_ms,
                                     auth_headers(settings.token))
        async with BackgroundTasks() as loops:
            loops.spawn(ls.pusher.run(), name="snapshot-pusher")
            if ls.mover is not None:
                ls.mover.session = session
                loops.spawn(ls.mover.run(), name="move-orders")
            if expiry_loop:
                loops.spawn(_expiry(ls), name="dead-node-expiry")
                if settings.refresh_ms > 0:
                    loops.spawn(_refresh(ls), name="snapshot-refresh")
            log.info("load store starting: b=%d dead_after_ms=%.0f", settings.b,
                     settings.dead_after_ms)
            yield
        await session.close()
        log.info("load store stopped")

    app.cleanup_ctx.append(background)
    app.router.add_post("/internal/register", register)
    app.router.add_post("/internal/deltas", deltas)
    app.router.add_post("/internal/node_state", node_state)
    app.router.add_post("/internal/lookup", lookup)
    app.router.add_get("/v1/nodes", nodes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler(registry))
    return app


async def expire_now(ls: LoadStoreApp) -> bool:
    """Run one expiry pass; when a node died, fence it durably, then push a snapshot
    (whose ``dead`` list makes its tasks read ``lost``)."""
    if ls.store.expire():
        await ls.save_membership()
        ls.pusher.request()
        return True
    return False


def refresh_now(ls: LoadStoreApp) -> bool:
    """Ask for a push when reports changed the state and no snapshot went out for
    ``refresh_ms``; True if one was asked for."""
    idle_ms = ls.clock.now_ms() - ls.pusher.last_push_ms
    if ls.store.changed and idle_ms >= ls.settings.refresh_ms:
        ls.pusher.request()
        return True
    return False


async def _refresh(ls: LoadStoreApp) -> None:
    while True:
        await asyncio.sleep(ls.settings.refresh_ms / 2000.0)
        refresh_now(ls)


async def _expiry(ls: LoadStoreApp) -> None:
    interval_ms = ls.settings.expiry_interval_ms
    last = ls.clock.now_ms()
    while True:
        await asyncio.sleep(interval_ms / 1000.0)
        now = ls.clock.now_ms()
        late_ms, last = now - last - interval_ms, now
        if late_ms > ls.settings.dead_after_ms / 2:
            # The store itself was not running (stopped, paused, starved); the nodes'
            # reports are waiting in its sockets, so their silence proves nothing.
            log.warning("load store stalled for %.0f ms; not counting it against the nodes",
                        late_ms)
            ls.store.forgive_stall(late_ms)
        try:
            await expire_now(ls)
        except Exception:  # a full disk must not stop expiry; the next pass saves again
            log.exception("load store: saving the membership file failed")



async def register(request: web.Request) -> web.Response:
    ls = request.app[LOADSTORE]
    msg, _ = await read_message(request, Register, field="register")
    ls.counter.received("register")
    if msg.role != "scheduler":
        return json_error(400, "role", f"only schedulers register, got {msg.role!r}")
    ls.pusher.register(msg)
    return web.Response(status=204)


async def deltas(request: web.Request) -> web.Response:
    ls = request.app[LOADSTORE]
    msg, _ = await read_message(request, Deltas, field="deltas")
    try:
        due = ls.store.add_deltas(msg)
    except ValueError as exc:
        return json_error(400, "deltas", str(exc))
    ls.counter.received("deltas")
    if due:
        ls.pusher.request()
    return web.Response(status=204)


async def node_state(request: web.Request) -> web.Response:
    ls = request.app[LOADSTORE]
    msg, _ = await read_message(request, NodeState, field="node_state")
    try:
        fenced = ls.store.is_fenced(msg)
        changed = False if fenced else ls.store.report(msg)
    except ValueError as exc:
        return json_error(400, "node_state", str(exc))
    ls.counter.received("heartbeat" if msg.heartbeat else "node_state")
    if fenced:
        log.warning("node %s reported from life %s, which was declared dead: fencing it",
                    msg.node_id, msg.incarnation)
    if ls.store.membership_dirty:
        try:
            await ls.save_membership()
        except Exception:  # keep serving; health says degraded until a save succeeds
            log.exception("load store: saving the membership file failed")
    if changed:
        ls.pusher.request()
    if ls.mover is not None and not fenced:
        ls.mover.on_report(msg.node_id)
    return wire_response(ReportAck(ls.pusher.load_wanted(), fenced=fenced,
                                   lease_ms=ls.settings.dead_after_ms, instance=ls.instance,
                                   kept=ls.store.kept(msg) if fenced else ()))


async def lookup(request: web.Request) -> web.Response:
    """Where tasks are, for any scheduler; with ``claim``, one placement per id."""
    ls = request.app[LOADSTORE]
    msg, _ = await read_message(request, Lookup, field="lookup")
    ls.counter.received("lookup")
    outcomes, nodes_, owners, states = ls.store.index.lookup(
        msg.task_ids, msg.scheduler_id, msg.claim, ls.store.is_dead, ls.store.index_complete(),
        ended=msg.ended)
    return wire_response(LookupReply(tuple(outcomes), tuple(nodes_), tuple(owners),
                                     tuple(states) if any(states) else ()))


async def nodes(request: web.Request) -> web.Response:
    return web.json_response(request.app[LOADSTORE].store.describe())


async def healthz(request: web.Request) -> web.Response:
    ls = request.app[LOADSTORE]
    return web.json_response({
        # unsaved membership: a restart now would forget fences (docs/guarantees.md)
        "status": "degraded" if ls.store.membership_dirty else "ok",
        "role": "loadstore", "instance": ls.instance,
        "pid": os.getpid(),  # lets a launcher tell its own process from another on the port
        "nodes": len(ls.store.live()), "schedulers": len(ls.pusher.schedulers),
        "dead": list(ls.store.dead()), "indexed_tasks": len(ls.store.index),
    })
