"""The chaos test's client side: a seeded submission plan, its runner, and status reads.

The client behaves as a careful user would: every id is submitted with the
same body every time; a submission that got no answer (the scheduler died, the
request timed out) or a 5xx is retried on the other scheduler; some ids are
resubmitted on purpose to the same and to the other scheduler; and an id that
a scheduler calls ``lost`` is resubmitted there, as docs/reliability.md tells
clients to do. Everything it sent and heard is kept per id (:class:`TaskRecord`)
for the checks, with the ledger's size around each request as its clock.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from tests.daemons.conftest import http_json
from tests.faults.chaos_ledger import Ledger, task_command

log = logging.getLogger(__name__)

TERMINAL = ("succeeded", "failed", "lost")
REQUEST_TIMEOUT_S = 20.0  # longer than any enqueue timeout + failover; bounded
MAX_RETRIES = 4
RETRY_PAUSE_S = 0.3


@dataclass
class Attempt:
    """One submission of one id: to whom, why, when (ledger bytes) and the answer."""

    sched: int
    kind: str  # batch, single, retry, resubmit-same, resubmit-other, resubmit-lost
    ledger0: int
    ledger1: int
    status: int | None  # HTTP status; None when no answer came (connection error, timeout)
    node: str | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        # A 503 batch answer still lists the tasks it did enqueue, with their node.
        return self.node is not None and self.status in (202, 503)

    def describe(self) -> str:
        what = (f"-> {self.node}" if self.accepted
                else f"-> {self.status} {self.error or ''}".rstrip())
        return (f"{self.kind} to sched-{self.sched} {what} "
                f"(ledger bytes {self.ledger0}..{self.ledger1})")


@dataclass(frozen=True)
class MidrunAnswer:
    """A terminal answer the client read while the faults went on."""

    sched: int
    state: str
    node: str | None
    reason: str | None
    ledger: int  # ledger bytes when it was read


@dataclass
class TaskRecord:
    task_id: str
    body: dict
    first_sched: int
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return any(a.accepted for a in self.attempts)

    def accepted_by(self) -> dict[int, set[str]]:
        """Scheduler index → nodes it placed this id on."""
        out: dict[int, set[str]] = {}
        for a in self.attempts:
            if a.accepted:
                out.setdefault(a.sched, set()).add(a.node)  # type: ignore[arg-type]
        return out


@dataclass
class Op:
    """One request of the plan: ``ids`` to scheduler ``sched`` (a batch when ``batch``)."""

    kind: str
    sched: int
    ids: list[str]
    batch: bool


def make_plan(rng: random.Random, n_tasks: int, prefix: str, ledger: Ledger,
              schedulers: int = 2) -> tuple[dict[str, dict], dict[str, int], list[Op]]:
    """The task bodies, each id's first scheduler and the ordered requests: batches,
    singles and resubmissions.

    Durations: mostly tens of ms, a quarter a few hundred ms, one in twelve 1–2.5 s,
    so that an agent kill nearly always hits a task with time left to run. About one
    request in five resubmits ids already planned (a few requests later), half to the
    scheduler that first got them, half to the other.
    """
    bodies: dict[str, dict] = {}
    first: dict[str, int] = {}
    by_origin: dict[int, list[str]] = {s: [] for s in range(schedulers)}
    ops: list[Op] = []
    later: list[tuple[int, Op]] = []  # resubmissions and the position they are due at
    n = 0
    while n < n_tasks:
        size = rng.randint(5, 30) if rng.random() < 0.55 else 1
        size = min(size, n_tasks - n)
        sched = rng.randrange(schedulers)
        ids = []
        for _ in range(size):
            tid = f"{prefix}{n:05d}"
            n += 1
            r = rng.random()
            sleep_ms = (rng.randint(20, 60) if r < 0.67 else rng.randint(100, 300) if r < 0.92
                        else rng.randint(1000, 2500))
            bodies[tid] = {"id": tid, "cores": 1, "memory_mb": 64, "duration_ms": sleep_ms,
                           "command": task_command(ledger.path, ledger.lockdir, sleep_ms)}
            first[tid] = sched
            by_origin[sched].append(tid)
            ids.append(tid)
        ops.append(Op("batch" if size > 1 else "single", sched, ids, size > 1))
        now = len(ops)
        ops.extend(op for due, op in later if due <= now)
        later = [(due, op) for due, op in later if due > now]
        if rng.random() < 0.25:
            # the ids of one resubmission share their first scheduler, so "same" and
            # "other" hold for each of them
            origin = rng.randrange(schedulers)
            known = by_origin[origin]
            if not known:
                continue
            picked = rng.sample(known, min(len(known), rng.choice((1, 1, 2, 4))))
            same = rng.random() < 0.5
            target = origin if same else (origin + 1) % schedulers
            op = Op("resubmit-same" if same else "resubmit-other", target, picked, len(picked) > 1)
            later.append((len(ops) + rng.randint(1, 25), op))
    ops.extend(op for _, op in later)
    return bodies, first, ops


class Client:
    """Blocking HTTP to the schedulers (their ports never change across restarts)."""

    def __init__(self, sched_urls: list[str], ledger: Ledger, bodies: dict[str, dict],
                 first_sched: dict[str, int], token: str | None = None) -> None:
        self.urls = sched_urls
        self.ledger = ledger
        self.token = token
        self.records = {tid: TaskRecord(tid, body, first_sched[tid])
                        for tid, body in bodies.items()}
        self._lock = threading.Lock()
        self.requests = 0
        self.no_answer = 0
        self.codes: dict[int, int] = {}

    def submit(self, sched: int, ids: list[str], kind: str, batch: bool) -> list[str]:
        """POST the ids' bodies; record an Attempt per id; return the ids worth retrying."""
        tasks = [self.records[t].body for t in ids]
        payload = {"tasks": tasks} if batch else tasks[0]
        ledger0 = self.ledger.size()
        try:
            code, body = http_json(self.urls[sched] + "/v1/tasks", payload, token=self.token,
                                   timeout=REQUEST_TIMEOUT_S)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            code, body = None, {"error": {"reason": f"no answer: {exc!r}"}}
        ledger1 = self.ledger.size()
        placed = {}
        if isinstance(body, dict):
            placed = {p.get("id"): p for p in body.get("placements") or () if isinstance(p, dict)}
        err = body.get("error") if isinstance(body, dict) else None
        reason = err.get("reason") if isinstance(err, dict) else (str(err) if err else None)
        retry = []
        with self._lock:
            self.requests += 1
            if code is None:
                self.no_answer += 1
            else:
                self.codes[code] = self.codes.get(code, 0) + 1
            for tid in ids:
                p = placed.get(tid) or {}
                att = Attempt(sched, kind, ledger0, ledger1, code, p.get("node"),
                              p.get("error") or (None if p.get("node") else reason))
                self.records[tid].attempts.append(att)
                if not att.accepted and (code is None or code >= 500):
                    retry.append(tid)
        return retry

    def submit_with_retries(self, op: Op, stop: threading.Event) -> None:
        """One planned request; what got no answer or a 5xx goes to the other scheduler."""
        retry = self.submit(op.sched, op.ids, op.kind, op.batch)
        sched = op.sched
        for _ in range(MAX_RETRIES):
            if not retry or stop.is_set():
                return
            time.sleep(RETRY_PAUSE_S)
            sched = (sched + 1) % len(self.urls)
            retry = self.submit(sched, retry, "retry", len(retry) > 1)
        if retry:
            log.warning("gave up on %d id(s) after %d retries, e.g. %s", len(retry), MAX_RETRIES,
                        retry[0])

    def status(self, sched: int, task_id: str, timeout: float = 10.0) -> tuple[int | None, dict]:
        """``GET /v1/tasks/{id}`` at one scheduler: (HTTP status or None, body)."""
        try:
            code, body = http_json(f"{self.urls[sched]}/v1/tasks/{task_id}", token=self.token,
                                   timeout=timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return None, {"error": {"reason": f"no answer: {exc!r}"}}
        return code, body if isinstance(body, dict) else {}


class Submitter:
    """Runs the plan on ``workers`` threads, paced over ``duration_s``, and a lost-watcher.

    Request ``i`` is due ``i * duration_s / len(ops)`` after start; a worker that
    falls behind sends at once. The watcher reads the status of a few accepted
    ids now and then and resubmits an id that a scheduler calls ``lost``.
    """

    def __init__(self, client: Client, ops: list[Op], duration_s: float, seed: int,
                 workers: int = 3) -> None:
        self.client = client
        self.ops = ops
        self.duration_s = duration_s
        self.rng = random.Random(seed)
        self.workers = workers
        self.stop = threading.Event()
        self._next = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.midrun_answers: dict[str, int] = {}
        self.midrun_terminal: dict[str, list[MidrunAnswer]] = {}
        self.lost_resubmitted: list[str] = []
        self.errors: list[str] = []

    def start(self) -> None:
        self.t0 = time.monotonic()
        for i in range(self.workers):
            self._threads.append(threading.Thread(target=self._work, name=f"chaos-submit-{i}",
                                                  daemon=True))
        self._threads.append(threading.Thread(target=self._watch, name="chaos-watch", daemon=True))
        for t in self._threads:
            t.start()

    @property
    def sent(self) -> int:
        return min(self._next, len(self.ops))

    def done(self) -> bool:
        return self._next >= len(self.ops) and not any(
            t.is_alive() for t in self._threads if t.name.startswith("chaos-submit"))

    def join(self, timeout: float) -> bool:
        """Wait for the plan to finish (the watcher stops with it); False on timeout."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.name.startswith("chaos-submit"):
                t.join(max(0.0, deadline - time.monotonic()))
        finished = self.done()
        self.stop.set()
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return finished

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.ops):
                return None
            self._next += 1
            return self._next - 1

    def _work(self) -> None:
        interval = self.duration_s / max(1, len(self.ops))
        while not self.stop.is_set():
            i = self._take()
            if i is None:
                return
            wait = self.t0 + i * interval - time.monotonic()
            if wait > 0 and self.stop.wait(wait):
                return
            try:
                self.client.submit_with_retries(self.ops[i], self.stop)
            except Exception as exc:  # a harness bug must show, not silently stop a worker
                log.exception("submission %d failed in the harness", i)
                self.errors.append(f"op {i}: {exc!r}")

    def _watch(self) -> None:
        client, rng = self.client, self.rng
        resubmitted: set[str] = set()
        while not self.stop.wait(0.25):
            accepted = [t for t, r in client.records.items() if r.accepted]
            if not accepted:
                continue
            for tid in rng.sample(accepted, min(4, len(accepted))):
                sched = rng.randrange(len(client.urls))
                code, body = client.status(sched, tid, timeout=5.0)
                state = body.get("state") if code == 200 else f"http-{code}"
                with self._lock:
                    self.midrun_answers[state] = self.midrun_answers.get(state, 0) + 1
                    if state in TERMINAL:
                        self.midrun_terminal.setdefault(tid, []).append(MidrunAnswer(
                            sched, state, body.get("node"), body.get("reason"),
                            client.ledger.size()))
                if state == "lost" and tid not in resubmitted:
                    resubmitted.add(tid)
                    self.lost_resubmitted.append(tid)
                    client.submit(sched, [tid], "resubmit-lost", batch=False)


def read_final_states(client: Client, ids: list[str], schedulers: int, timeout_s: float,
                      workers: int = 8,
                      repeat_404: int = 3) -> dict[str, list[tuple[int | None, dict]]]:
    """Every id's answer at every scheduler, polled until terminal (bounded).

    Non-terminal answers (``queued``, ``running``, ``unknown``, 5xx, no answer)
    are asked again until ``timeout_s``; a 404 is asked ``repeat_404`` times
    (a restarted scheduler might learn the id again) and then taken as the answer.
    """
    answers: dict[tuple[str, int], tuple[int | None, dict]] = {}
    seen_404: dict[tuple[str, int], int] = {}
    pending = [(tid, s) for tid in ids for s in range(schedulers)]
    deadline = time.monotonic() + timeout_s
    with ThreadPoolExecutor(workers) as pool:
        while pending:
            results = list(pool.map(lambda key: client.status(key[1], key[0]), pending))
            again = []
            for key, (code, body) in zip(pending, results):
                answers[key] = (code, body)
                if code == 200 and body.get("state") in TERMINAL:
                    continue
                if code == 404:
                    seen_404[key] = seen_404.get(key, 0) + 1
                    if seen_404[key] >= repeat_404:
                        continue
                again.append(key)
            pending = again
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    out: dict[str, list[tuple[int | None, dict]]] = {}
    for tid in ids:
        out[tid] = [answers[(tid, s)] for s in range(schedulers)]
    return out


def answer_text(code: int | None, body: dict) -> str:
    """A short form of one answer: ``succeeded@node-1``, ``HTTP 404``, ``unknown@node-2 (why)``."""
    if code == 200:
        state, node = body.get("state"), body.get("node")
        text = f"{state}@{node}" if node else str(state)
        if state not in ("succeeded",) and body.get("reason"):
            text += f" ({body['reason']})"
        return text
    if code is None:
        return f"no answer ({body.get('error', {}).get('reason', '')})"
    return f"HTTP {code}"


def counted(items) -> dict:
    out: dict = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], str(kv[0]))))


Progress = Callable[[str], None]
