"""The client's task handles, errors and id routing (:mod:`dodoor.client` re-exports them)."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, Sized, TypeVar

from dodoor.errors import DodoorError
from dodoor.taskstates import CANCELLED, FAILED, LOST, TERMINAL

if TYPE_CHECKING:
    from dodoor.client import Client
    from dodoor.client_async import AsyncClient

T = TypeVar("T")


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


_RAISES = {FAILED: TaskFailed, LOST: TaskLost, CANCELLED: TaskCancelled}


def rendezvous(urls: Sequence[str], key: str) -> list[str]:
    """``urls`` in the order ``key`` tries them: highest hash of (url, key) first."""
    def weight(url: str) -> bytes:
        return hashlib.sha256(f"{url}\0{key}".encode("utf-8", "surrogatepass")).digest()
    return sorted(urls, key=weight, reverse=True)


def route_chunks(urls: Sequence[str], items: Iterable[T], key: Callable[[T], str],
                 size: int) -> list[list[T]]:
    """``items`` grouped by the scheduler their ``key`` (an id) goes to first, in chunks of
    at most ``size``: one request each."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(rendezvous(urls, key(item))[0], []).append(item)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


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


def time_left(deadline: float | None, pending: Sized, timeout: float | None) -> float | None:
    """Seconds until ``deadline`` (a ``time.monotonic()`` value; None: no deadline) for
    :func:`as_completed`-style loops; ``TimeoutError`` naming what is left once it passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"{len(pending)} task(s) not done within {timeout} s")
    return left
