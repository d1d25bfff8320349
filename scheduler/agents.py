"""Talking to node agents (and the load store) over one pooled keep-alive session."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from dodoor.errors import DecodeError
from dodoor.messages import MessageCounter
from dodoor.wire import CONTENT_TYPE, TaskStatus, decode, encode


class PeerError(Exception):
    """A peer could not be reached or refused a message (``status`` when it answered)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PeerClient:
    """Sends wire messages and counts each under its type (DESIGN §4 accounting)."""

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

        Counted ``count`` times under ``kind`` (default: the message's type).
        """
        self.counter.add(kind or msg.TYPE, count)
        return await self.post_raw(url, encode(msg), expect)

    async def post_raw(self, url: str, data: bytes, expect: type | None = None) -> Any:
        try:
            async with self.session.post(url, data=data, headers=self._headers,
                                         timeout=self.timeout) as resp:
                body = await resp.read()
                if resp.status >= 300:
                    raise PeerError(f"{url}: HTTP {resp.status} {body[:200]!r}", resp.status)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise PeerError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if expect is None:
            return None
        try:
            reply = decode(body, expect)
        except DecodeError as exc:
            raise PeerError(f"{url}: bad reply: {exc}") from exc
        self.counter.add(reply.TYPE)
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
                    raise PeerError(f"{url}: HTTP {resp.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise PeerError(f"{url}: {type(exc).__name__}: {exc}") from exc
        try:
            return decode(body, TaskStatus)
        except DecodeError as exc:
            raise PeerError(f"{url}: bad task status: {exc}") from exc

    async def get_json(self, url: str) -> Any:
        try:
            async with self.session.get(url, headers=self._get_headers,
                                        timeout=self.timeout) as resp:
                if resp.status >= 300:
                    raise PeerError(f"{url}: HTTP {resp.status}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise PeerError(f"{url}: {type(exc).__name__}: {exc}") from exc
