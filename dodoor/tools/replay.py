"""Trace replay over HTTP: submit at arrival times, follow to the end, summarize.

Times: the client stamps ``submit`` on its wall clock (epoch ms) when it sends a
request; the agents stamp ``queued_ms``/``started_ms``/``finished_ms`` with
``WallClock`` (epoch ms, node_agent/app.py), so on one host — or containers
sharing its kernel clock — the two compare directly. Every time in the result
is relative to the replay's start, like the simulator's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence, TextIO

import aiohttp

from dodoor.service.auth_token import auth_headers
from dodoor.client import AsyncClient, ClientError
from dodoor.clock import Clock, WallClock
from dodoor.errors import ValidationError
from dodoor.resources import NodeSpec, Task
# TERMINAL has cancelled: a cancelled task is done
from dodoor.taskstates import FAILED, LOST, QUEUED, RUNNING, SUCCEEDED, TERMINAL
from dodoor.sim.records import TaskRecords
from dodoor.sim.summary import summarize
from dodoor.tools.metrics_scrape import Components, cluster_counts, difference, scrape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplaySettings:
    """urls: the schedulers (each id goes to its scheduler by the client's rendezvous
    hashing); agents/loadstore: metrics sources (agents default to the scheduler's
    ``GET /v1/nodes``); batch_window_ms: tasks due within this window of the first go
    in one submission (one request per scheduler); poll_s: least time between two
    status reads of one task (backing off to max_poll_s; the tasks due in one tick are
    read with one batch status request per scheduler); max_resubmits: per task, one
    per loss."""

    urls: tuple[str, ...]
    agents: tuple[str, ...] | None = None
    loadstore: str | None = None
    batch_window_ms: float = 2.0
    max_batch: int = 100
    max_inflight: int = 16
    poll_s: float = 0.5
    max_poll_s: float = 2.0
    max_resubmits: int = 3
    submit_retries: int = 20
    retry_s: float = 0.5
    timeout_s: float = 600.0
    token: str | None = None
    progress_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("replay needs at least one scheduler URL")
        if self.max_resubmits < 0 or self.max_batch < 1:
            raise ValueError(f"bad replay bounds: max_resubmits={self.max_resubmits}, "
                             f"max_batch={self.max_batch}")


@dataclass
class _Track:
    """What the client knows about one task."""

    state: str = "pending"  # pending, submitted, queued, running, or terminal
    submit_ms: float = math.nan
    next_poll_ms: float = 0.0
    resubmits: int = 0
    retries: int = 0
    polls: int = 0
    status: dict = field(default_factory=dict)


@dataclass
class ReplayResult:
    records: TaskRecords
    nodes: list[NodeSpec]
    counts: Counter
    counts_by_role: dict[str, Counter]
    wall_s: float
    states: Counter
    resubmits: int

    def summary(self, policy: str, settings: dict[str, Any] | None = None) -> dict:
        """The ``summary.json`` object, the schema of ``dodoor simulate``."""
        extra = {"mode": "live", "states": dict(self.states), "resubmits": self.resubmits,
                 "messages_by_role": {r: dict(c) for r, c in self.counts_by_role.items()},
                 **(settings or {})}
        return summarize(policy, self.records, self.nodes, self.counts, self.wall_s, extra)


def is_loopback(url: str) -> bool:
    """Only loopback peers are ever contacted (compose agents' URLs are container names)."""
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


async def fetch_nodes(session: aiohttp.ClientSession, url: str,
                      token: str | None = None) -> tuple[list[NodeSpec], list[str]]:
    """The cluster's nodes and agent URLs from a scheduler's ``GET /v1/nodes``."""
    try:
        async with session.get(url + "/v1/nodes", headers=auth_headers(token)) as resp:
            if resp.status == 401:
                raise ValidationError("token", f"{url} refused the token (401); set "
                                      "DODOOR_TOKEN to the cluster's token")
            resp.raise_for_status()
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        raise ValidationError("url", f"cannot read {url}/v1/nodes: {exc}") from exc
    nodes, urls = [], []
    for n in body.get("nodes", []):
        cap = n["capacity"]
        nodes.append(NodeSpec(n["id"], float(cap["cores"]), float(cap["memory_mb"]),
                              float(cap["disk_mb"]), int(n.get("slots", 1))))
        urls.append(n["url"])
    return nodes, urls


class Replayer:
    """One replay of ``tasks`` (arrival_ms already compressed) against live schedulers."""

    def __init__(self, tasks: Sequence[Task], settings: ReplaySettings,
                 clock: Clock | None = None, progress: TextIO | None = sys.stderr) -> None:
        self.tasks = sorted(tasks, key=lambda t: t.arrival_ms)
        self.settings = settings
        self.clock = clock or WallClock()
        self.progress = progress
        self.track = [_Track() for _ in self.tasks]
        self.index = {t.task_id: i for i, t in enumerate(self.tasks)}
        if len(self.index) != len(self.tasks):
            raise ValueError("task ids in a replay must be unique")
        self._gate = asyncio.Semaphore(settings.max_inflight)
        self._submitted_all = asyncio.Event()
        self._client: AsyncClient | None = None
        self.t0 = 0.0

    # -- the run -----------------------------------------------------------------

    async def run(self) -> ReplayResult:
        s = self.settings
        timeout = aiohttp.ClientTimeout(total=60)
        async with (aiohttp.ClientSession(timeout=timeout) as session,
                    AsyncClient(s.urls, s.token, timeout=60.0) as client):
            self._client = client
            nodes, agent_urls = await fetch_nodes(session, s.urls[0], s.token)
            if s.agents is None:
                skipped = [u for u in agent_urls if not is_loopback(u)]
                if skipped:
                    log.warning("not reading /metrics of %d non-loopback agent(s), e.g. %s; their "
                                "messages are counted at the receiving side", len(skipped),
                                skipped[0])
                agent_urls = [u for u in agent_urls if is_loopback(u)]
            components = Components(tuple(s.urls), tuple(s.agents if s.agents is not None
                                                         else agent_urls), s.loadstore)
            auth = auth_headers(s.token)
            before = await scrape(session, components, auth)
            self.t0 = self.clock.now_ms()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._submit_all(group))
                follower = group.create_task(self._follow(group))
                if self.progress is not None:
                    group.create_task(self._show_progress(follower))
            wall_s = (self.clock.now_ms() - self.t0) / 1000.0
            by_role = difference(await scrape(session, components, auth), before)
        return ReplayResult(self._records(nodes), nodes, cluster_counts(by_role), by_role,
                            wall_s, Counter(t.state for t in self.track),
                            sum(t.resubmits for t in self.track))

    async def _submit_all(self, group: asyncio.TaskGroup) -> None:
        s = self.settings
        i, n = 0, len(self.tasks)
        while i < n:
            due = self.t0 + self.tasks[i].arrival_ms
            j = i + 1
            while (j < n and j - i < s.max_batch
                   and self.tasks[j].arrival_ms - self.tasks[i].arrival_ms <= s.batch_window_ms):
                j += 1
            wait_ms = due - self.clock.now_ms()
            if wait_ms > 0:
                await asyncio.sleep(wait_ms / 1000.0)
            await self._gate.acquire()  # bounds requests in flight; released by _send
            group.create_task(self._send(list(range(i, j))))
            i = j
        self._submitted_all.set()

    async def _send(self, idxs: list[int]) -> None:
        """Submit one batch (one attempt); placed tasks are followed, unplaced ones
        retried later, refused ones fail."""
        assert self._client is not None
        try:
            now = self.clock.now_ms()
            for i in idxs:
                t = self.track[i]
                if math.isnan(t.submit_ms):
                    t.submit_ms = now
                t.state = "submitted"
            placements = await self._client.submit_once(self.tasks[i].to_dict() for i in idxs)
        except ClientError as exc:  # an answer that is not one: the same ids again later
            log.warning("submitting %d task(s) failed: %s", len(idxs), exc)
            self._retry(idxs, str(exc))
            return
        finally:
            self._gate.release()
        now = self.clock.now_ms()
        for i in idxs:
            p = placements[self.tasks[i].task_id]
            if p.get("status") in (400, 413, 422):
                self._finish(i, FAILED, {"reason": p["error"]})
                continue
            # node None without an error: a Sparrow reservation not yet confirmed (it
            # will be placed by the first confirm; the status reads "queued" meanwhile)
            if p.get("error"):
                if p["status"] == 0:
                    log.warning("submitting task %s failed: %s", self.tasks[i].task_id,
                                p["error"])
                self._retry([i], p["error"])
                continue
            t = self.track[i]
            t.state = QUEUED
            t.next_poll_ms = now + max(self.tasks[i].duration_ms, self.settings.poll_s * 1000.0)

    def _retry(self, idxs: list[int], reason: str) -> None:
        for i in idxs:
            t = self.track[i]
            t.retries += 1
            if t.retries > self.settings.submit_retries:
                self._finish(i, FAILED, {"reason": f"not placed: {reason}"})
            else:
                t.state = "retry"
                t.next_poll_ms = self.clock.now_ms() + self.settings.retry_s * 1000.0

    def _finish(self, i: int, state: str, status: dict) -> None:
        self.track[i].state = state
        self.track[i].status = status

    async def _follow(self, group: asyncio.TaskGroup) -> None:
        s = self.settings
        deadline = self.clock.now_ms() + s.timeout_s * 1000.0
        tick = min(0.05, s.poll_s)
        while True:
            now = self.clock.now_ms()
            open_ = [i for i, t in enumerate(self.track) if t.state not in TERMINAL]
            if self._submitted_all.is_set() and not open_:
                return
            if now > deadline:
                for i in open_:
                    self._finish(i, "timeout", {**self.track[i].status,
                                                "last_state": self.track[i].state})
                log.warning("replay timed out with %d task(s) not terminal", len(open_))
                return
            due = [i for i in open_ if self.track[i].state in (QUEUED, RUNNING, "retry")
                   and self.track[i].next_poll_ms <= now]
            resend = [i for i in due if self.track[i].state == "retry"]
            for i in resend:
                await self._gate.acquire()
                group.create_task(self._send([i]))
            polls = [i for i in due if self.track[i].state != "retry"]
            if polls:
                await self._poll(polls, group)
            await asyncio.sleep(tick)

    async def _poll(self, idxs: list[int], group: asyncio.TaskGroup) -> None:
        """Read the status of the tasks due: one batch request per scheduler."""
        assert self._client is not None
        try:
            answers = await self._client.statuses(self.tasks[i].task_id for i in idxs)
        except ClientError as exc:  # read again at the next due time, like no answer
            log.warning("status of %d task(s) not read: %s", len(idxs), exc)
            answers = {}
        now = self.clock.now_ms()
        for i in idxs:
            self._absorb(i, answers.get(self.tasks[i].task_id), now, group)

    def _absorb(self, i: int, body: dict | None, now: float, group: asyncio.TaskGroup) -> None:
        """One task's status read (None: not answered), and when to read it next."""
        s, t, task = self.settings, self.track[i], self.tasks[i]
        body = body or {}
        error = body.get("error") or {}
        state = LOST if error.get("status") == 404 else body.get("state")
        if state in (SUCCEEDED, FAILED):
            self._finish(i, state, body)
        elif state == LOST:
            self._lost(i, {"reason": error["reason"]} if error else body, group)
        else:
            if state in (QUEUED, RUNNING):
                t.state, t.status = state, body
            remaining = task.duration_ms
            if state == RUNNING and body.get("started_ms") is not None:
                remaining = body["started_ms"] + task.duration_ms - now
            # a task waiting in a queue is read less and less often: each read is a status
            # lookup at its agent, on the cluster being measured (end times come from the
            # agent anyway)
            t.polls += 1
            backoff = min(s.poll_s * 1.5 ** (t.polls - 1), s.max_poll_s) * 1000.0
            t.next_poll_ms = now + max(backoff, remaining)

    def _lost(self, i: int, status: dict, group: asyncio.TaskGroup) -> None:
        """Resubmit once per loss (same id, to its scheduler again, which places a lost
        id anew)."""
        t = self.track[i]
        if t.resubmits >= self.settings.max_resubmits:
            self._finish(i, LOST, status)
            return
        t.resubmits += 1
        log.info("task %s lost (%s); resubmitting (%d)", self.tasks[i].task_id,
                 status.get("reason"), t.resubmits)
        t.state = "submitted"
        group.create_task(self._resend(i))

    async def _resend(self, i: int) -> None:
        await self._gate.acquire()
        await self._send([i])

    async def _show_progress(self, follower: asyncio.Task) -> None:
        assert self.progress is not None
        last_done, last_ms = 0, self.clock.now_ms()
        while not follower.done():
            await asyncio.sleep(self.settings.progress_s)
            counts = Counter(t.state for t in self.track)
            done = counts[SUCCEEDED] + counts[FAILED] + counts[LOST]
            now = self.clock.now_ms()
            rate = (done - last_done) / max((now - last_ms) / 1000.0, 1e-9)
            last_done, last_ms = done, now
            submitted = len(self.track) - counts["pending"]
            self.progress.write(
                f"\rsubmitted {submitted}/{len(self.track)}  running {counts[RUNNING]}  "
                f"done {counts[SUCCEEDED]}  failed {counts[FAILED] + counts[LOST]}  "
                f"{rate:6.1f} tasks/s ")
            self.progress.flush()
        self.progress.write("\n")

    # -- results -----------------------------------------------------------------

    def _records(self, nodes: Sequence[NodeSpec]) -> TaskRecords:
        records = TaskRecords(self.tasks)
        where = {n.node_id: k for k, n in enumerate(nodes)}
        for i, t in enumerate(self.track):
            st = t.status
            records.submit[i] = t.submit_ms - self.t0
            records.placed[i] = _rel(st.get("queued_ms"), self.t0)
            records.start[i] = _rel(st.get("started_ms"), self.t0)
            records.end[i] = _rel(st.get("finished_ms"), self.t0)
            records.node[i] = where.get(st.get("node"), -1)
        records.finished = sum(1 for t in self.track if t.state == SUCCEEDED)
        return records


def _rel(value: Any, t0: float) -> float:
    return math.nan if value is None else float(value) - t0


def scale_tasks(tasks: Sequence[Task], speedup: float = 1.0, duration_scale: float = 1.0,
                prefix: str = "") -> list[Task]:
    """Arrivals divided by ``speedup`` (from the first arrival), durations multiplied by
    ``duration_scale`` (at least 1 ms), ids prefixed (a fresh prefix per live run keeps
    ids unique across runs against the same agents)."""
    if not (speedup > 0 and duration_scale > 0):
        raise ValueError(f"speedup and duration scale must be > 0, got {speedup}, "
                         f"{duration_scale}")
    first = min((t.arrival_ms for t in tasks), default=0.0)
    return [dataclasses.replace(t, task_id=prefix + t.task_id,
                                arrival_ms=(t.arrival_ms - first) / speedup,
                                duration_ms=max(1.0, t.duration_ms * duration_scale))
            for t in tasks]


async def replay(tasks: Sequence[Task], settings: ReplaySettings,
                 progress: TextIO | None = sys.stderr) -> ReplayResult:
    """Replay ``tasks`` (arrival and duration already scaled) against ``settings.urls``."""
    return await Replayer(tasks, settings, progress=progress).run()
