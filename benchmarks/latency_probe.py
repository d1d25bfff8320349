"""Per-stage timings inside a running daemon, for benchmarks/submit_latency.py (not a test).

``python benchmarks/latency_probe.py OUT <dodoor args>`` runs a dodoor daemon
with timers wrapped around the stages of a submission's path; SIGUSR1 starts
recording and SIGUSR2 writes every sample, in seconds, as JSON to ``OUT``
(``{stage: [samples]}``; sizes are plain counts). The wrappers are installed on
whatever of these the tree being run has, so the same probe times an older
tree (``--baseline-tree``) too:

* every aiohttp handler, by route (``handler POST /v1/tasks`` ...);
* scheduler: parsing and validating a submission, the placer, a caller's wait
  for its claim and for its enqueue (coalesced requests included), and each
  request to a peer by path (its round trip, and how many ids or tasks it carried);
* agent: ``NodeAgent.submit_many`` (journal and queue), the journal write as its
  caller waits for it, and the group commit on the journal thread (statements
  and ``COMMIT``, whose fsync is most of it) with the writes it carried, and
  which accepts were sent while a commit of tasks' ends alone was under way;
* every process: garbage-collector pauses and event-loop lag (a 2 ms ticker's
  lateness).

Besides the samples, ``OUT`` holds ``"~detail"``: each stage's maximum with its
wall-clock time (``max``), the slowest ``SLOWEST`` requests of each handler with
the time spent in each timed stage inside it (``slowest``; ``read body`` is
``Request.read``; stages nest as they are called, e.g. ``agent journal wait``
and ``agent pump`` inside ``agent submit_many``), and the loop thread's stack sampled while the ticker was more than
100 ms late (``stalls``, benchmarks/stall_watch.py).
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import functools
import gc
import heapq
import itertools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from stall_watch import StallWatch

_TICK_S = 0.002
SLOWEST = 10
# the stages timed inside the request being handled (None outside a handler)
_REQUEST: contextvars.ContextVar[dict | None] = contextvars.ContextVar("request", default=None)


class Probe:
    """Samples per stage, recorded only between SIGUSR1 and SIGUSR2."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.on = False
        self.samples: dict[str, list[float]] = {}
        self._lock = threading.Lock()  # the journal thread records too
        self._gc_start = 0.0
        self._ticker: asyncio.TimerHandle | None = None
        self.before_stop: list[Callable[[], None]] = []  # tallies made from what was recorded
        self.maxima: dict[str, tuple[float, float]] = {}  # stage -> (max, wall time)
        self.slowest: dict[str, list[tuple[float, int, dict]]] = {}  # handler -> min-heap
        self._seq = itertools.count()
        self.watch = StallWatch()
        self.checkpoints: list[tuple[float, float]] = []  # (wall time, seconds)
        self.freeze = False

    def add(self, stage: str, value: float) -> None:
        if self.on:
            with self._lock:
                self.samples.setdefault(stage, []).append(value)
                if value > self.maxima.get(stage, (-1.0, 0.0))[0]:
                    self.maxima[stage] = (value, time.time())

    def _inside(self, stage: str, dt: float) -> None:
        """Charge ``dt`` to ``stage`` of the request being handled, if any."""
        req = _REQUEST.get()
        if req is not None:
            req[stage] = req.get(stage, 0.0) + dt

    def timed_handler(self, stage: str, fn: Callable):
        """``timed_async`` that also keeps the slowest requests' stages."""
        probe = self

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            req: dict = {}
            token = _REQUEST.set(req)
            t0, wall = time.perf_counter(), time.time()
            try:
                return await fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                _REQUEST.reset(token)
                probe.add(stage, dt)
                if probe.on:
                    probe._keep_slow(stage, dt, {"t": wall, "total": dt, **req})
        return wrapper

    def _keep_slow(self, stage: str, dt: float, rec: dict) -> None:
        with self._lock:
            heap = self.slowest.setdefault(stage, [])
            item = (dt, next(self._seq), rec)
            if len(heap) < SLOWEST:
                heapq.heappush(heap, item)
            elif dt > heap[0][0]:
                heapq.heapreplace(heap, item)

    def timed_async(self, stage: str, fn: Callable, size: Callable[..., int] | None = None):
        probe = self

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                probe.add(stage, dt)
                probe._inside(stage, dt)
                if size is not None:
                    probe.add(stage + " size", size(*args, **kwargs))
        return wrapper

    def timed(self, stage: str, fn: Callable, size: Callable[..., int] | None = None):
        probe = self

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                probe.add(stage, dt)
                probe._inside(stage, dt)
                if size is not None:
                    probe.add(stage + " size", size(*args, **kwargs))
        return wrapper

    # -- GC and loop lag ----------------------------------------------------
    def gc_callback(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
            self.watch.in_gc = True
        else:
            self.watch.in_gc = False
            dt = time.perf_counter() - self._gc_start
            self.add("gc pause", dt)
            self.add(f"gc pause gen{_info.get('generation', '?')}", dt)

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds
        now = time.perf_counter()
        self.watch.last_tick = now
        self.add("loop lag", max(0.0, now - due))
        if self.on:
            self._ticker = loop.call_later(_TICK_S, self._tick, loop, now + _TICK_S)

    def start(self, *_: object) -> None:
        with self._lock:
            self.samples.clear()
            self.maxima.clear()
            self.slowest.clear()
            self.checkpoints.clear()
        if self.freeze:
            gc.collect()
            gc.freeze()
        self.watch.start(threading.get_ident())  # signal handlers run on the loop's thread
        self.on = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._ticker = loop.call_later(_TICK_S, self._tick, loop, time.perf_counter() + _TICK_S)

    def stop(self, *_: object) -> None:
        for tally in self.before_stop:
            tally()
        self.on = False
        if self._ticker is not None:
            self._ticker.cancel()
        self.watch.stop()
        with self._lock:
            detail = {"max": self.maxima, "stalls": self.watch.stalls,
                      "checkpoints": self.checkpoints,
                      "slowest": {k: [rec for _, _, rec in sorted(v, reverse=True)]
                                  for k, v in self.slowest.items()}}
            Path(self.out).write_text(json.dumps({**self.samples, "~detail": detail}))


def _wrap_method(probe: Probe, module: str, cls: str, name: str, stage: str,
                 size: Callable[..., int] | None = None) -> None:
    """Wrap ``module.cls.name`` when the tree has it (an older tree may not)."""
    try:
        owner = getattr(__import__(module, fromlist=[cls]), cls)
        fn = getattr(owner, name)
    except (ImportError, AttributeError):
        return
    wrap = probe.timed_async if asyncio.iscoroutinefunction(fn) else probe.timed
    setattr(owner, name, wrap(stage, fn, size))


def install(probe: Probe) -> None:
    """Put the timers in place (before the daemon builds its app)."""
    from aiohttp import web

    add_route = web.UrlDispatcher.add_route

    def timed_route(self, method, path, handler, **kwargs):
        if asyncio.iscoroutinefunction(handler):
            handler = probe.timed_handler(f"handler {method} {path}", handler)
        return add_route(self, method, path, handler, **kwargs)

    web.UrlDispatcher.add_route = timed_route
    web.BaseRequest.read = probe.timed_async("read body", web.BaseRequest.read)
    gc.callbacks.append(probe.gc_callback)

    def peer_stage(self, url, msg, *args, **kwargs):
        return len(getattr(msg, "task_ids", None) or getattr(msg, "tasks", None) or (1,))

    from dodoor.service import peers

    send = peers.PeerClient.send

    @functools.wraps(send)
    async def timed_send(self, url, msg, *args, **kwargs):
        path = "/" + url.split("/", 3)[-1]
        return await probe.timed_async(f"peer {path}", send, peer_stage)(
            self, url, msg, *args, **kwargs)

    peers.PeerClient.send = timed_send
    try:
        import scheduler.app as sched_app
    except ImportError:
        sched_app = None
    if sched_app is not None and hasattr(sched_app, "parse_submission"):
        sched_app.parse_submission = probe.timed("scheduler parse", sched_app.parse_submission)
    _wrap_method(probe, "scheduler.placer", "Placer", "check_fits", "scheduler check_fits")
    _wrap_method(probe, "scheduler.placer", "Placer", "place", "scheduler place")
    _wrap_method(probe, "scheduler.claims", "Claims", "claim", "scheduler claim wait")
    _wrap_method(probe, "scheduler.outbox", "Outbox", "enqueue", "scheduler enqueue wait")
    _wrap_method(probe, "scheduler.placer", "Placer", "_resolve", "scheduler decide")
    _wrap_method(probe, "scheduler.paths.forwarder", "Forwarder", "forward", "scheduler forward")
    _wrap_method(probe, "scheduler.sender", "AgentSender", "enqueue", "scheduler sender enqueue")
    _wrap_method(probe, "node_agent.node", "NodeAgent", "submit_many", "agent submit_many")
    _wrap_method(probe, "node_agent.node", "NodeAgent", "_pump", "agent pump")
    _wrap_method(probe, "node_agent.queue", "TaskQueue", "fits_node", "agent fits")
    _wrap_method(probe, "node_agent.journal", "Journal", "accept_many", "agent journal wait")
    _wrap_method(probe, "node_agent.journal_store", "JournalStore", "_commit",
                 "agent group commit", size=lambda self, conn, batch, *a, **k: len(batch))
    _watch_ends_alone(probe)
    _watch_checkpoints(probe)


def _watch_checkpoints(probe: Probe) -> None:
    """Group commits that checkpointed the WAL into the database file (its mtime moved):
    stage ``agent checkpoint commit``, and their times in ``~detail`` ``checkpoints``,
    to set against stalls of every agent's fsync at once."""
    try:
        from node_agent.journal_store import JournalStore
        commit = JournalStore._commit
    except (ImportError, AttributeError):
        return
    @functools.wraps(commit)
    def watched(self, conn, batch, *args, **kwargs):
        if not probe.on:
            return commit(self, conn, batch, *args, **kwargs)
        before, t0, wall = os.stat(self.path).st_mtime_ns, time.perf_counter(), time.time()
        try:
            return commit(self, conn, batch, *args, **kwargs)
        finally:
            if os.stat(self.path).st_mtime_ns != before:
                dt = time.perf_counter() - t0
                probe.add("agent checkpoint commit", dt)
                with probe._lock:
                    probe.checkpoints.append((wall, dt))

    JournalStore._commit = watched  # type: ignore[method-assign]


def _gc_settings(spec: str) -> None:
    """``DODOOR_PROBE_GC``: ``freeze`` (``gc.freeze()`` when recording starts, after the
    warm-up) and/or ``T0:T1:T2`` thresholds, comma-separated (benchmarks only)."""
    for part in filter(None, spec.split(",")):
        if part != "freeze":
            gc.set_threshold(*(int(x) for x in part.split(":")))


def _watch_ends_alone(probe: Probe) -> None:
    """Per accept, 1 when it was sent while a commit of tasks' ends alone was under way
    (so it waited for that commit before its own), else 0: stage ``agent accept behind
    an end``, computed when the probe stops."""
    try:
        from node_agent.journal import Journal
        from node_agent.journal_store import JournalStore
        commit, accept = JournalStore._commit, Journal.accept_many
    except (ImportError, AttributeError):  # an older tree
        return
    spans: list[tuple[float, float]] = []
    sent: list[float] = []

    @functools.wraps(commit)
    def timed_commit(self, conn, batch, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return commit(self, conn, batch, *args, **kwargs)
        finally:
            if probe.on and all("finish" in getattr(w, "__qualname__", "") for w, _, _ in batch):
                with probe._lock:
                    spans.append((t0, time.perf_counter()))

    @functools.wraps(accept)
    def timed_accept(self, *args, **kwargs):
        if probe.on:
            sent.append(time.perf_counter())
        return accept(self, *args, **kwargs)

    def tally() -> None:
        with probe._lock:
            ordered = sorted(spans)
            spans.clear()
        starts = [a for a, _ in ordered]
        for t in sent:
            k = bisect.bisect_right(starts, t) - 1
            probe.add("agent accept behind an end", float(k >= 0 and t < ordered[k][1]))
        sent.clear()

    JournalStore._commit = timed_commit  # type: ignore[method-assign]
    Journal.accept_many = timed_accept  # type: ignore[method-assign]
    probe.before_stop.append(tally)


def main(argv: list[str]) -> None:
    out, rest = argv[0], argv[1:]
    probe = Probe(out)
    spec = os.environ.get("DODOOR_PROBE_GC", "")
    _gc_settings(spec)
    probe.freeze = "freeze" in spec.split(",")
    install(probe)
    signal.signal(signal.SIGUSR1, probe.start)
    signal.signal(signal.SIGUSR2, probe.stop)
    from dodoor.tools.cli import main as dodoor_main
    sys.exit(dodoor_main(rest))


if __name__ == "__main__":
    main(sys.argv[1:])
