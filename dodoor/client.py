"""A Python client for dodoor schedulers: submit tasks, follow them, cancel them.

A leaf module: no daemon and nothing in the core imports it; the command-line tools
(``dodoor submit``, ``dodoor replay``) are built on it.

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
use :class:`AsyncClient` there). :class:`AsyncClient` is in :mod:`dodoor.client_async`,
the handles and errors in :mod:`dodoor.client_handles`; import them from here.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from typing import Any, Awaitable, Iterable, Iterator, Sequence, TypeVar

# the public names live in two modules of their own; this one re-exports them
from dodoor.client_async import MAX_IDS_PER_REQUEST, AsyncClient  # noqa: F401
from dodoor.client_handles import (ClientError, NoSchedulerError, RequestError,  # noqa: F401
                                   TaskCancelled, TaskError, TaskFailed, TaskHandle, TaskLost,
                                   rendezvous, time_left)

T = TypeVar("T")

__all__ = ["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "AsyncClient", "Client",
           "ClientError", "NoSchedulerError", "RequestError", "TaskCancelled", "TaskFailed",
           "TaskHandle", "TaskLost", "TaskError", "as_completed", "wait"]


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
            left = time_left(deadline, pending, timeout)
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
