"""Talking to node agents (and the load store) over one pooled keep-alive session."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from dodoor.errors import DecodeError
from dodoor.messages import MessageCounter
from dodoor.wire import CONTENT_TYPE, TaskStatus, decode, encode

# answers that prove the peer has no such endpoint: the message was not delivered
_NOT_DELIVERED = frozenset({404, 405})


class PeerError(Exception):
    """A message to a peer did not go through.

    ``status`` is the HTTP status when the peer answered. ``outcome_unknown``
    tells the two kinds of failure apart:

    * False, a **definite refusal**: the peer answered 4xx, or 503 (an agent's
      deliberate "cannot journal it"), or no connection could be made, so
      nothing was sent. The peer did not act on the message; sending it
      elsewhere is safe.
    * True, an **unknown outcome**: the message was (or may have been) sent but
      no verdict came back: a timeout, a connection dropped after sending, a
      5xx other than 503, an unreadable 2xx reply. The peer may have acted on
      it; only a peer that deduplicates (agents do, by task id) can safely be
      asked again, and nobody else should be asked instead.
    """

    def __init__(self, message: str, status: int | None = None, *,
                 outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.outcome_unknown = outcome_unknown

    @property
    def refused(self) -> bool:
        """True for a definite refusal: the peer did not act on the message."""
        return not self.outcome_unknown

    @classmethod
    def answered(cls, url: str, status: int, body: bytes = b"") -> PeerError:
        """The peer answered ``status`` (>= 300) instead of accepting."""
        # 503 is what an agent answers when it cannot take the message; any other 5xx
        # (a crash mid-request, a proxy's 502/504) may come after the peer acted
        unknown = status >= 500 and status != 503
        detail = f" {body[:200]!r}" if body else ""
        return cls(f"{url}: HTTP {status}{detail}", status, outcome_unknown=unknown)

    @classmethod
    def failed(cls, url: str, exc: BaseException) -> PeerError:
        """The request raised ``exc`` before any answer (chain it: ``raise ... from exc``)."""
        # only a connection that was never made is sure to have carried nothing
        unknown = not isinstance(exc, aiohttp.ClientConnectorError)
        return cls(f"{url}: {type(exc).__name__}: {exc}", outcome_unknown=unknown)


class PeerClient:
    """Sends wire messages and counts each under its type (docs/design.md §4 accounting)."""

    def __init__(
        self, session: aiohttp.ClientSession, counter: MessageCounter, timeout_ms: float,
        headers: dict[str, str],
    ) -> None:
        self.session = session
        self.counter = counter
        self.timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000.0)
        self._headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE, **headers}
        self._get_headers = {"Accept": CONTENT_TYPE, **headers}

    async def send(self, url: str, msg: Any, expect: type | None = None,
                   count: int = 1, kind: str | None = None) -> Any:
        """POST ``msg`` to ``url``; the decoded reply when ``expect`` is given, else None.

        Counted as sent ``count`` times under ``kind`` (default: the message's type)
        once the request is over, unless the peer answered 404 or 405: it has no such
        endpoint (an older agent without batched enqueues), so nothing was delivered.
        Counting after the fact, rather than taking a count back, keeps the exported
        counter from ever going down (Prometheus reads a decrease as a restart).
        """
        kind = kind or msg.TYPE
        try:
            reply = await self.post_raw(url, encode(msg), expect)
        except PeerError as exc:
            if exc.status not in _NOT_DELIVERED:
                self.counter.sent(kind, count)
            raise
        except BaseException:  # cancelled mid-request: it may have gone out
            self.counter.sent(kind, count)
            raise
        self.counter.sent(kind, count)
        return reply

    async def send_status(self, url: str, msg: Any, kind: str | None = None) -> int:
        """POST ``msg`` and return the peer's 2xx status (an order answered 202 when it
        acted, 204 when it had nothing to act on); PeerError as for :meth:`send`."""
        kind = kind or msg.TYPE
        try:
            async with self.session.post(url, data=encode(msg), headers=self._headers,
                                         timeout=self.timeout) as resp:
                body = await resp.read()
                if resp.status >= 300:
                    raise PeerError.answered(url, resp.status, body)
                return resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise PeerError.failed(url, exc) from exc
        finally:  # counted whatever came back: an order may have gone out
            self.counter.sent(kind)

    async def post_raw(self, url: str, data: bytes, expect: type | None = None) -> Any:
        """POST encoded ``data``; raises :class:`PeerError` (see there for its kinds)."""
        try:
            async with self.session.post(url, data=data, headers=self._headers,
                                         timeout=self.timeout) as resp:
                body = await resp.read()
                if resp.status >= 300:
                    raise PeerError.answered(url, resp.status, body)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise PeerError.failed(url, exc) from exc
        if expect is None:
            return None
        try:
            reply = decode(body, expect)
        except DecodeError as exc:
            # the peer accepted (2xx) and then said something we cannot read
            raise PeerError(f"{url}: bad reply: {exc}", resp.status,
                            outcome_unknown=True) from exc
        self.counter.received(reply.TYPE)
        return reply

    async def task_status(self, agent_url: str, task_id: str) -> TaskStatus | None:
        """The agent's view of a task; None when it does not know the id."""
        url = f"{agent_url}/v1/tasks/{task_id}"
        try:
            async with self.session.get(url, headers=self._get_headers,
                                        timeout=self.timeout) as resp:
                body = await resp.read()
                if resp.status == 404:
                    return None
                if resp.status >= 300:
                    raise PeerError.answered(url, resp.status)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise PeerError.failed(url, exc) from exc
        try:
            return decode(body, TaskStatus)
        except DecodeError as exc:
            raise PeerError(f"{url}: bad task status: {exc}") from exc

    async def task_json(self, agent_url: str, task_id: str) -> dict | None:
        """The agent's JSON view of a task, with its ``log_tail``; None when unknown there."""
        url = f"{agent_url}/v1/tasks/{task_id}"
        headers = {k: v for k, v in self._get_headers.items() if k != "Accept"}
        try:
            async with self.session.get(url, headers=headers, timeout=self.timeout) as resp:
                if resp.status == 404:
                    return None
                if resp.status >= 300:
                    raise PeerError.answered(url, resp.status)
                found = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise PeerError.failed(url, exc) from exc
        if not isinstance(found, dict):
            raise PeerError(f"{url}: expected a JSON object, got {type(found).__name__}")
        return found

    async def get_json(self, url: str) -> Any:
        try:
            async with self.session.get(url, headers=self._get_headers,
                                        timeout=self.timeout) as resp:
                if resp.status >= 300:
                    raise PeerError.answered(url, resp.status)
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise PeerError.failed(url, exc) from exc
