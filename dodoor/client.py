"""A Python client for dodoor schedulers: submit tasks, follow them, cancel them.

A leaf module: nothing in the scheduler, the agent or the core imports it.

    from dodoor.client import Client, wait, as_completed

    with Client(["http://127.0.0.1:8100", "http://127.0.0.1:8101"]) as c:
        handles = c.submit_many({"cores": 1, "memory_mb": 256, "command": ["true"]}
                                for _ in range(1000))
        for h in as_completed(handles):
            print(h.id, h.status()["state"])

Routing: each task id goes to one scheduler, chosen by rendezvous hashing over the
URLs, so every client sends an id to the same place; the next scheduler in the id's
order is used only when that one is unreachable (any scheduler answers for any
task). A task that ends ``lost`` (its node was declared dead) is resubmitted with
the same id, up to ``max_retries`` times. Following many tasks uses the batch
status call with a long poll: about one request per poll round, not per task.

:class:`AsyncClient` has the same methods as coroutines; :class:`Client` runs them
on an event loop of its own (so it must not be called from inside a running loop:
use :class:`AsyncClient` there).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from typing import Any, Awaitable, Iterable, Iterator, Sequence, TypeVar

import aiohttp
import msgpack

from dodoor.errors import DodoorError
from dodoor.service.auth_token import auth_headers
from dodoor.taskstates import TERMINAL

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "AsyncClient", "Client",
           "ClientError", "NoSchedulerError", "RequestError", "TaskCancelled", "TaskFailed",
           "TaskHandle", "TaskLost", "TaskError", "as_completed", "wait"]

# what the scheduler takes per request (scheduler.status.MAX_STATUS_IDS, settings.max_batch)
MAX_IDS_PER_REQUEST = 10_000
SUBMIT_CHUNK = 1_000
# a long poll asks for at most this long, so a dead connection is noticed
LONG_POLL_S = 20.0


class ClientError(DodoorError):
    """Base of the client's errors."""


class NoSchedulerError(ClientError):
    """No scheduler answered (all unreachable); names them and the last failure."""


class RequestError(ClientError):
    """A scheduler refused a request: ``status`` (HTTP), ``field`` and ``reason``."""

    def __init__(self, status: int, field: str, reason: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {field}: {reason}")
        self.status, self.field, self.reason, self.body = status, field, reason, body


class TaskError(ClientError):
    """A task ended other than ``succeeded``; ``status`` is its final status."""

    def __init__(self, status: dict) -> None:
        super().__init__(f"task {status.get('id')!r} ended {status.get('state')}: "
                         f"{status.get('reason')}")
        self.status = status


class TaskFailed(TaskError):
    """The task ended ``failed`` (its exit code and reason are in ``status``)."""


class TaskLost(TaskError):
    """The task ended ``lost`` more times than the client resubmits it."""


class TaskCancelled(TaskError):
    """The task was cancelled."""


_RAISES = {"failed": TaskFailed, "lost": TaskLost, "cancelled": TaskCancelled}


def rendezvous(urls: Sequence[str], key: str) -> list[str]:
    """``urls`` in the order ``key`` tries them: highest hash of (url, key) first."""
    def weight(url: str) -> bytes:
        return hashlib.sha256(f"{url}\0{key}".encode("utf-8", "surrogatepass")).digest()
    return sorted(urls, key=weight, reverse=True)


class TaskHandle:
    """One submitted task: its id, its last known status, and how to wait for it."""

    def __init__(self, client: "AsyncClient | Client", task: dict) -> None:
        self.id: str = task["id"]
        self.task = task
        self.client = client
        self.last: dict | None = None
        self.resubmits = 0

    @property
    def done(self) -> bool:
        """True once the task is final (terminal, with no resubmission left to try)."""
        return self.last is not None and self.last.get("state") in TERMINAL

    def status(self) -> Any:
        """The task's current status (a coroutine with :class:`AsyncClient`)."""
        return self.client.status(self)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the end: the final status of a ``succeeded`` task; raises
        :class:`TaskFailed`, :class:`TaskLost` or :class:`TaskCancelled` otherwise, and
        ``TimeoutError`` after ``timeout`` s (a coroutine with :class:`AsyncClient`)."""
        return self.client.result(self, timeout)

    def cancel(self) -> Any:
        """:meth:`AsyncClient.cancel` of this task."""
        return self.client.cancel(self)

    def __repr__(self) -> str:
        state = self.last.get("state") if self.last else "submitted"
        return f"<TaskHandle {self.id} {state}>"


def final_result(handle: TaskHandle) -> dict:
    """The final status of a done handle, or its error raised."""
    assert handle.last is not None
    error = _RAISES.get(handle.last["state"])
    if error is not None:
        raise error(handle.last)
    return handle.last


class AsyncClient:
    """The client as coroutines (aiohttp); see the module docstring.

    ``urls``: the schedulers; ``token``: the cluster's bearer token; ``timeout``: per
    request, in seconds; ``max_retries``: resubmissions of a task that ended ``lost``;
    ``poll_interval``: the pause between status rounds while following many tasks (it
    lets completions gather, so a round answers for many)."""

    def __init__(self, urls: str | Sequence[str], token: str | None = None, *,
                 timeout: float = 10.0, max_retries: int = 3, poll_interval: float = 0.5,
                 submit_attempts: int = 5) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("no scheduler URL given")
        self.urls = [u.rstrip("/") for u in self.urls]
        self.token = token
        self.timeout = timeout
        self.max_retries = max_retries
        self.poll_interval = poll_interval
        self.submit_attempts = submit_attempts
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
        h = {"Accept": "application/json"}
        if content_type:
            h["Content-Type"] = content_type
        h.update(auth_headers(self.token))
        return h

    async def _request(self, method: str, key: str, path: str, body: bytes | None = None,
                       content_type: str | None = None, extra_s: float = 0.0) -> tuple[int, Any]:
        """One request to the first reachable scheduler in ``key``'s order: (status, JSON).
        Raises NoSchedulerError when none can be reached."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.timeout + extra_s)
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

        ``priority=2`` submits it in a higher class (0..3, default 1; docs/design.md §11).
        """
        return (await self.submit_many([task_fields]))[0]

    async def submit_many(self, tasks: Iterable[dict]) -> list[TaskHandle]:
        """Submit many tasks, batched (msgpack), each batch to its ids' scheduler."""
        handles = [TaskHandle(self, self._with_id(t)) for t in tasks]
        by_sched: dict[str, list[TaskHandle]] = {}
        for h in handles:
            by_sched.setdefault(rendezvous(self.urls, h.id)[0], []).append(h)
        for group in by_sched.values():
            for i in range(0, len(group), SUBMIT_CHUNK):
                await self._submit_batch(group[i:i + SUBMIT_CHUNK])
        return handles

    async def _submit_batch(self, handles: list[TaskHandle]) -> None:
        body = msgpack.packb({"tasks": [h.task for h in handles]}, use_bin_type=True)
        delay = 0.2
        for attempt in range(self.submit_attempts):
            status, answer = await self._request("POST", handles[0].id, "/v1/tasks", body,
                                                 "application/msgpack")
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
        if (status.get("state") == "lost" and handle.resubmits < self.max_retries
                and len(handle.task) > 1):  # a handle made from a bare id has no body to send
            handle.resubmits += 1
            log.info("task %s was lost; resubmitting it (%d of %d)", handle.id,
                     handle.resubmits, self.max_retries)
            await self._submit_batch([handle])
            handle.last = {"id": handle.id, "state": "queued", "reason": "resubmitted"}

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
        groups: dict[str, list[TaskHandle]] = {}
        for h in handles:
            groups.setdefault(rendezvous(self.urls, h.id)[0], []).append(h)
        chunks = [g[i:i + MAX_IDS_PER_REQUEST] for g in groups.values()
                  for i in range(0, len(g), MAX_IDS_PER_REQUEST)]
        jobs = [asyncio.ensure_future(self._ask_status(c, wait_s)) for c in chunks]
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

    async def _ask_status(self, chunk: list[TaskHandle], wait_s: float) -> dict:
        body = json.dumps({"ids": [h.id for h in chunk], "wait_s": wait_s}).encode()
        status, answer = await self._request("POST", chunk[0].id, "/v1/tasks/status", body,
                                             "application/json", extra_s=wait_s)
        if status != 200:
            raise self._refused(status, answer)
        return answer

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
            failed = any(h.last and h.last["state"] != "succeeded" for h in done)
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
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"{len(pending)} task(s) not done within {timeout} s")
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


class Client:
    """The blocking client: :class:`AsyncClient`'s methods run on a private event loop."""

    def __init__(self, urls: str | Sequence[str], token: str | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self.aio = AsyncClient(urls, token, **options)

    def _run(self, coro: Awaitable[T]) -> T:
        return self._loop.run_until_complete(coro)

    @property
    def requests(self) -> int:
        """HTTP requests made so far."""
        return self.aio.requests

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the session and the loop."""
        if not self._loop.is_closed():
            self._run(self.aio.close())
            self._loop.close()

    def _own(self, handles: list[TaskHandle]) -> list[TaskHandle]:
        for h in handles:  # so h.status() and h.result() block too
            h.client = self
        return handles

    def submit(self, **task_fields: Any) -> TaskHandle:
        """See :meth:`AsyncClient.submit`."""
        return self._own([self._run(self.aio.submit(**task_fields))])[0]

    def submit_many(self, tasks: Iterable[dict]) -> list[TaskHandle]:
        """See :meth:`AsyncClient.submit_many`."""
        return self._own(self._run(self.aio.submit_many(tasks)))

    def status(self, id_or_handle: str | TaskHandle) -> dict:
        """See :meth:`AsyncClient.status`."""
        return self._run(self.aio.status(id_or_handle))

    def result(self, id_or_handle: str | TaskHandle, timeout: float | None = None) -> dict:
        """See :meth:`TaskHandle.result`."""
        return self._run(self.aio.result(id_or_handle, timeout))

    def wait(self, handles: Iterable[TaskHandle], timeout: float | None = None,
             return_when: str = ALL_COMPLETED) -> tuple[set[TaskHandle], set[TaskHandle]]:
        """See :meth:`AsyncClient.wait`."""
        return self._run(self.aio.wait(handles, timeout, return_when))

    def as_completed(self, handles: Iterable[TaskHandle],
                     timeout: float | None = None) -> Iterator[TaskHandle]:
        """Like :func:`concurrent.futures.as_completed`."""
        pending = set(handles)
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"{len(pending)} task(s) not done within {timeout} s")
            done, pending = self._run(self.aio.wait(pending, left, FIRST_COMPLETED,
                                                    pause_first=not first))
            first = False
            yield from done

    def cancel(self, id_or_handle: str | TaskHandle) -> bool:
        """See :meth:`AsyncClient.cancel`."""
        return self._run(self.aio.cancel(id_or_handle))

    def logs(self, id_or_handle: str | TaskHandle, max_bytes: int = 65536) -> str:
        """See :meth:`AsyncClient.logs`."""
        return self._run(self.aio.logs(id_or_handle, max_bytes))


def _client_of(handles: list[TaskHandle]) -> Client:
    clients = {id(h.client): h.client for h in handles}
    if len(clients) != 1:
        raise ValueError(f"handles of {len(clients)} clients; wait on each client's apart")
    client = next(iter(clients.values()))
    if not isinstance(client, Client):
        raise TypeError("these handles are an AsyncClient's: use AsyncClient.wait")
    return client


def wait(handles: Iterable[TaskHandle], timeout: float | None = None,
         return_when: str = ALL_COMPLETED) -> tuple[set[TaskHandle], set[TaskHandle]]:
    """:meth:`Client.wait` of the handles' client, shaped like ``concurrent.futures.wait``."""
    handles = list(handles)
    if not handles:
        return set(), set()
    return _client_of(handles).wait(handles, timeout, return_when)


def as_completed(handles: Iterable[TaskHandle],
                 timeout: float | None = None) -> Iterator[TaskHandle]:
    """:meth:`Client.as_completed` of the handles' client."""
    handles = list(handles)
    if not handles:
        return iter(())
    return _client_of(handles).as_completed(handles, timeout)
