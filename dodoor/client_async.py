"""The client as coroutines: :class:`AsyncClient` (see :mod:`dodoor.client`)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from typing import Any, Iterable, Sequence

import aiohttp
import msgpack

from dodoor.service.auth_token import auth_headers
from dodoor.taskstates import LOST, QUEUED, SUCCEEDED
from dodoor.client_handles import (TERMINAL, ClientError, NoSchedulerError, RequestError,
                                   TaskHandle, final_result, rendezvous, route_chunks,
                                   time_left)

log = logging.getLogger(__name__)

# what the scheduler takes per request (scheduler.status.MAX_STATUS_IDS, settings.max_batch)
MAX_IDS_PER_REQUEST = 10_000
SUBMIT_CHUNK = 1_000
# a long poll asks for at most this long, so a dead connection is noticed
LONG_POLL_S = 20.0


class AsyncClient:
    """The client as coroutines (aiohttp); see the module docstring.

    ``urls``: the schedulers; ``token``: the cluster's bearer token; ``timeout``: per
    request, in seconds; ``max_retries``: resubmissions of a task that ended ``lost``;
    ``poll_interval``: the pause between status rounds while following many tasks (it
    lets completions gather, so a round answers for many); ``connect_timeout``: how long
    a scheduler may take to accept a connection before it counts as unreachable (so a
    cluster that is down is reported in seconds); ``submit_batch``: tasks per submission
    request."""

    def __init__(self, urls: str | Sequence[str], token: str | None = None, *,
                 timeout: float = 10.0, max_retries: int = 3, poll_interval: float = 0.5,
                 submit_attempts: int = 5, connect_timeout: float = 3.0,
                 submit_batch: int = SUBMIT_CHUNK) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("no scheduler URL given")
        self.urls = [u.rstrip("/") for u in self.urls]
        self.token = token
        self.timeout = timeout
        self.max_retries = max_retries
        self.poll_interval = poll_interval
        self.submit_attempts = submit_attempts
        if submit_batch < 1:
            raise ValueError(f"submit_batch must be >= 1, got {submit_batch!r}")
        self.connect_timeout = connect_timeout
        self.submit_batch = submit_batch
        self.requests = 0  # HTTP requests made (benchmarks report it per task)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- transport --------------------------------------------------------------
    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        h = {"Accept": "application/json", **auth_headers(self.token)}
        if content_type:
            h["Content-Type"] = content_type
        return h

    async def _request(self, method: str, key: str, path: str, body: bytes | None = None,
                       content_type: str | None = None, extra_s: float = 0.0) -> tuple[int, Any]:
        """One request to the first reachable scheduler in ``key``'s order: (status, JSON).
        Raises NoSchedulerError when none can be reached."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.timeout + extra_s,
                                        sock_connect=self.connect_timeout)
        failures = []
        for base in rendezvous(self.urls, key):
            self.requests += 1
            try:
                async with self._session.request(method, base + path, data=body,
                                                 headers=self._headers(content_type),
                                                 timeout=timeout) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                log.debug("scheduler %s unreachable: %r", base, exc)
                failures.append(f"{base}: {type(exc).__name__}: {exc}")
                continue
            try:
                return status, json.loads(raw) if raw else None
            except ValueError as exc:
                raise ClientError(f"{base}{path} answered {status} with a body that is not "
                                  f"JSON: {raw[:200]!r}") from exc
        raise NoSchedulerError(f"no scheduler answered {method} {path}: " + "; ".join(failures))

    @staticmethod
    def _refused(status: int, body: Any) -> RequestError:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        return RequestError(status, str(err.get("field", "?")), str(err.get("reason", body)),
                            body)

    # -- submitting ---------------------------------------------------------------
    @staticmethod
    def _with_id(fields: dict) -> dict:
        task = dict(fields)
        # the client names every task, so a retry after a lost answer is the same task
        task.setdefault("id", uuid.uuid4().hex)
        return task

    async def submit(self, **task_fields: Any) -> TaskHandle:
        """Submit one task (the fields of ``POST /v1/tasks``); an id is made when none is given.

        ``priority=2`` submits it in a higher class (0..3, default 1; docs/design.md §12).
        """
        return (await self.submit_many([task_fields]))[0]

    async def submit_many(self, tasks: Iterable[dict]) -> list[TaskHandle]:
        """Submit many tasks, batched (msgpack), each batch to its ids' scheduler."""
        handles = [TaskHandle(self, self._with_id(t)) for t in tasks]
        for chunk in route_chunks(self.urls, handles, lambda h: h.id, self.submit_batch):
            await self._submit_batch(chunk)
        return handles

    async def submit_once(self, tasks: Iterable[dict]) -> dict[str, dict]:
        """One attempt at submitting ``tasks`` (each with its ``id``), for a caller that
        times and retries its submissions itself (``dodoor replay``): nothing is retried or
        resubmitted here. The tasks go batched to their ids' schedulers, the requests at
        once. Returns id → the scheduler's placement ``{"id", "node"}`` (``node`` None: a
        Sparrow reservation not yet confirmed) or, for a task not placed,
        ``{"id", "node": None, "error": reason, "status": HTTP status}`` (status 0: no
        scheduler answered; 503: ask again; 4xx: refused)."""
        tasks = list(tasks)
        unnamed = [i for i, t in enumerate(tasks) if not t.get("id")]
        if unnamed:
            raise ValueError(f"submit_once needs every task's id; tasks[{unnamed[0]}] has none")
        chunks = route_chunks(self.urls, tasks, lambda t: t["id"], self.submit_batch)
        answers = await asyncio.gather(*(self._post_tasks(c) for c in chunks),
                                       return_exceptions=True)
        out: dict[str, dict] = {}
        for chunk, answer in zip(chunks, answers):
            if isinstance(answer, NoSchedulerError):
                status, body = 0, None
                reason = str(answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                status, body = answer
                reason = "" if status == 202 else str(self._refused(status, body))
            placed = {p["id"]: p for p in body.get("placements", [])} \
                if isinstance(body, dict) and status in (202, 503) else {}
            for t in chunk:
                p = placed.get(t["id"])
                out[t["id"]] = p if p is not None and not p.get("error") else {
                    "id": t["id"], "node": None, "status": status,
                    "error": (p or {}).get("error") or reason or f"HTTP {status}"}
        return out

    async def _post_tasks(self, tasks: list[dict]) -> tuple[int, Any]:
        body = msgpack.packb({"tasks": tasks}, use_bin_type=True)
        return await self._request("POST", tasks[0]["id"], "/v1/tasks", body,
                                   "application/msgpack")

    async def _submit_batch(self, handles: list[TaskHandle]) -> None:
        delay = 0.2
        for attempt in range(self.submit_attempts):
            status, answer = await self._post_tasks([h.task for h in handles])
            if status == 202:
                return
            # 503: not placed, or placed with an outcome still unknown; the same ids
            # again are safe (deduplicated), so ask again after a pause
            if status != 503 or attempt == self.submit_attempts - 1:
                raise self._refused(status, answer)
            log.info("submission of %d task(s) answered 503 (%s); again in %.1f s",
                     len(handles), self._refused(status, answer).reason, delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 5.0)

    # -- following ----------------------------------------------------------------
    def _handle(self, id_or_handle: str | TaskHandle) -> TaskHandle:
        if isinstance(id_or_handle, TaskHandle):
            return id_or_handle
        return TaskHandle(self, {"id": id_or_handle})

    async def _absorb(self, handle: TaskHandle, status: dict) -> None:
        """Take a status in; a ``lost`` task with resubmissions left is submitted again."""
        handle.last = status
        if (status.get("state") == LOST and handle.resubmits < self.max_retries
                and len(handle.task) > 1):  # a handle made from a bare id has no body to send
            handle.resubmits += 1
            log.info("task %s was lost; resubmitting it (%d of %d)", handle.id,
                     handle.resubmits, self.max_retries)
            await self._submit_batch([handle])
            handle.last = {"id": handle.id, "state": QUEUED, "reason": "resubmitted"}

    async def status(self, id_or_handle: str | TaskHandle) -> dict:
        """The task's status (``GET /v1/tasks/{id}``); RequestError for an unknown id."""
        handle = self._handle(id_or_handle)
        status, body = await self._request("GET", handle.id, f"/v1/tasks/{handle.id}")
        if status != 200:
            raise self._refused(status, body)
        await self._absorb(handle, body)
        return handle.last  # type: ignore[return-value]

    async def _poll(self, handles: list[TaskHandle], wait_s: float, first_only: bool) -> None:
        """One batch status round over ``handles`` (not done): the ids grouped by their
        scheduler (the one that placed them answers from memory), at most
        :data:`MAX_IDS_PER_REQUEST` a request, all requests long-polling at once. With
        ``first_only`` the round ends with the first request that answers (the others
        are abandoned); otherwise when all have."""
        chunks = route_chunks(self.urls, handles, lambda h: h.id, MAX_IDS_PER_REQUEST)
        jobs = [asyncio.ensure_future(self._ask_status([h.id for h in c], wait_s))
                for c in chunks]
        try:
            await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED if first_only
                               else asyncio.ALL_COMPLETED)
        finally:
            for job in jobs:
                if not job.done():
                    job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
        # absorbed only now, all together: a resubmission is never cut off half-way;
        # a request that failed raises its error here
        answered = [(chunk, job.result()) for chunk, job in zip(chunks, jobs)
                    if not job.cancelled()]
        for chunk, answer in answered:
            by_id = {h.id: h for h in chunk}
            for st in answer["tasks"]:
                await self._absorb(by_id[st["id"]], st)
        for _, answer in answered:
            for err in answer["errors"]:
                if err["status"] == 404:  # never will it end: say so rather than wait
                    raise RequestError(404, "id", err["reason"])

    async def _ask_status(self, ids: list[str], wait_s: float) -> dict:
        body = json.dumps({"ids": ids, "wait_s": wait_s}).encode()
        status, answer = await self._request("POST", ids[0], "/v1/tasks/status", body,
                                             "application/json", extra_s=wait_s)
        if status != 200:
            raise self._refused(status, answer)
        return answer

    async def statuses(self, ids: Iterable[str], wait_s: float = 0.0) -> dict[str, dict]:
        """One batch status call (``POST /v1/tasks/status``) over ``ids``, for a caller
        that schedules its own polls (``dodoor replay``): no pause, no resubmission. The
        ids are asked of their schedulers, at most :data:`MAX_IDS_PER_REQUEST` a request,
        the requests at once; ``wait_s`` > 0 long-polls. Returns id → status; an id a
        scheduler could not answer for maps to ``{"id", "state": None, "error":
        {"status", "reason"}}`` (status 404: unknown id); the ids of a scheduler group
        that no scheduler answered are absent (ask again later)."""
        chunks = route_chunks(self.urls, dict.fromkeys(ids), lambda i: i, MAX_IDS_PER_REQUEST)
        answers = await asyncio.gather(*(self._ask_status(c, wait_s) for c in chunks),
                                       return_exceptions=True)
        out: dict[str, dict] = {}
        for answer in answers:
            if isinstance(answer, NoSchedulerError):
                log.debug("batch status not answered: %s", answer)
                continue
            if isinstance(answer, BaseException):
                raise answer
            out.update((st["id"], st) for st in answer["tasks"])
            out.update((e["id"], {"id": e["id"], "state": None,
                                  "error": {"status": e["status"], "reason": e["reason"]}})
                       for e in answer["errors"])
        return out

    async def wait(self, handles: Iterable[TaskHandle], timeout: float | None = None,
                   return_when: str = ALL_COMPLETED, *,
                   pause_first: bool = False) -> tuple[set[TaskHandle], set[TaskHandle]]:
        """Like :func:`concurrent.futures.wait`: (done, not_done) once ``return_when`` holds
        (``FIRST_COMPLETED``, ``FIRST_EXCEPTION`` or ``ALL_COMPLETED``) or ``timeout`` passed.
        ``pause_first``: wait ``poll_interval`` before the first round too (a caller
        that just had a round, as :meth:`as_completed` does)."""
        handles = list(dict.fromkeys(handles))
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while True:
            done = {h for h in handles if h.done}
            pending = [h for h in handles if not h.done]
            failed = any(h.last and h.last["state"] != SUCCEEDED for h in done)
            if (not pending or (return_when == FIRST_COMPLETED and done)
                    or (return_when == FIRST_EXCEPTION and failed)):
                return done, set(pending)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0 and not first:
                return done, set(pending)
            if (pause_first or not first) and self.poll_interval > 0:
                pause = self.poll_interval if left is None else min(self.poll_interval, left)
                await asyncio.sleep(pause)
                left = None if deadline is None else deadline - time.monotonic()
            wait_s = LONG_POLL_S if left is None else max(0.0, min(LONG_POLL_S, left))
            await self._poll(pending, wait_s, first_only=return_when != ALL_COMPLETED)
            first = False

    async def as_completed(self, handles: Iterable[TaskHandle],
                           timeout: float | None = None):
        """An async iterator of the handles as they end; TimeoutError after ``timeout`` s."""
        pending = set(handles)
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while pending:
            left = time_left(deadline, pending, timeout)
            done, _ = await self.wait(pending, left, FIRST_COMPLETED, pause_first=not first)
            first = False
            for h in done:
                pending.discard(h)
                yield h

    async def result(self, id_or_handle: str | TaskHandle, timeout: float | None = None) -> dict:
        """See :meth:`TaskHandle.result`."""
        handle = self._handle(id_or_handle)
        done, _ = await self.wait([handle], timeout)
        if not done:
            raise TimeoutError(f"task {handle.id!r} not done within {timeout} s "
                               f"(last: {handle.last and handle.last.get('state')})")
        return final_result(handle)

    async def cancel(self, id_or_handle: str | TaskHandle) -> bool:
        """Cancel a task: True once it is ``cancelled`` (again: idempotent), False when it
        had already ended otherwise; RequestError for an unknown id."""
        handle = self._handle(id_or_handle)
        status, body = await self._request("DELETE", handle.id, f"/v1/tasks/{handle.id}")
        if status == 200:
            handle.last = body
            return True
        if status == 409 and isinstance(body, dict) and body.get("state") in TERMINAL:
            return False
        raise self._refused(status, body)

    async def logs(self, id_or_handle: str | TaskHandle, max_bytes: int = 65536) -> str:
        """The end of the task's output, as its agent keeps it."""
        handle = self._handle(id_or_handle)
        status, body = await self._request("GET", handle.id,
                                           f"/v1/tasks/{handle.id}/logs?max_bytes={max_bytes}")
        if status != 200:
            raise self._refused(status, body)
        return body["log_tail"]
