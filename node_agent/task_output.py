"""A task's output: a pipe whose write end goes to the task, whose read end the agent
reads on its event loop, keeping only the last ``LOG_TAIL_BYTES`` for the result."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 4096


class OutputTail(asyncio.Protocol):
    """Reads the task's output pipe, keeping the last LOG_TAIL_BYTES."""

    def __init__(self, loop: asyncio.AbstractEventLoop, write_fd: int) -> None:
        self.write_fd = write_fd
        self._closed: asyncio.Future[None] = loop.create_future()
        self._tail: deque[bytes] = deque()
        self._size = 0

    def close_write_end(self) -> None:
        """The task holds its own copy once launched; ours would keep the pipe open."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def data_received(self, data: bytes) -> None:
        self._tail.append(data)
        self._size += len(data)
        while self._size - len(self._tail[0]) >= LOG_TAIL_BYTES:
            self._size -= len(self._tail.popleft())

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.close_write_end()
        if not self._closed.done():
            self._closed.set_result(None)

    async def output_closed_within(self, seconds: float) -> None:
        """Wait for the last output; a process that left the group may hold the pipe."""
        try:
            async with asyncio.timeout(seconds):
                await asyncio.shield(self._closed)
        except TimeoutError:
            log.debug("output pipe still open %g s after the task ended", seconds)

    def tail_text(self) -> str:
        data = b"".join(self._tail)[-LOG_TAIL_BYTES:]
        return data.decode("utf-8", errors="replace")


async def output_pipe() -> tuple[asyncio.ReadTransport, OutputTail]:
    """A pipe for the task's stdout and stderr: its read end on the event loop."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        return await loop.connect_read_pipe(lambda: OutputTail(loop, write_fd),
                                            os.fdopen(read_fd, "rb", buffering=0))
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
