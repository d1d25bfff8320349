"""The agent's side of the task launcher (:mod:`node_agent.launcher`).

:class:`LaunchClient` starts the launcher process, sends it launch requests and
turns its replies into futures: the task leader's pid once it runs, and its exit
code once the launcher has reaped it. Everything here runs on the event loop
without blocking (the socket is non-blocking; the one blocking call, starting
the launcher, goes through a thread).

If the launcher dies, every pending launch and every unreaped leader's exit
future fails with :class:`LauncherGone`; the caller then finds out how its tasks
ended without it (the process executor polls their process groups), and the
next launch needs a new client.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Sequence

from node_agent import launcher

log = logging.getLogger(__name__)

_LAUNCHER_PATH = os.path.abspath(launcher.__file__)
_CLOSE_WAIT_S = 5.0
# A launch is a fork and an exec: a launcher that has not answered one in this long is
# stuck, and is killed rather than left to hold every task's start.
LAUNCH_REPLY_S = 30.0
_REPLY_MAX = 4096  # the launcher's replies are small; a larger buffer costs every read


class LauncherGone(Exception):
    """The launcher process died (or was closed); the message says how."""


class LaunchError(OSError):
    """The launcher could not start a task (its exec failed); the message says why."""


@dataclass(frozen=True, slots=True)
class Launched:
    """A started task leader: ``exited`` resolves to its returncode (negative: signal)."""

    pid: int
    exited: asyncio.Future[int]


class LaunchClient:
    """One launcher process, used from one event loop; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 proc: subprocess.Popen[bytes]) -> None:
        self.loop = loop
        self._sock = sock
        self._proc = proc
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Launched]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._outbox: deque[tuple[bytes, int]] = deque()
        self._gone: str | None = None
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def start(cls) -> "LaunchClient":
        """Start a launcher process; OSError if it cannot be."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # -I -S: no site packages, no environment's PYTHON* settings; a quicker start
            proc = await asyncio.to_thread(
                subprocess.Popen, [sys.executable, "-I", "-S", _LAUNCHER_PATH, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                start_new_session=True)  # a terminal's ^C is for the agent, which then closes it
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        log.info("task launcher started (pid %d)", proc.pid)
        return cls(asyncio.get_running_loop(), mine, proc)

    @property
    def alive(self) -> bool:
        return self._gone is None

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def launch(self, argv: Sequence[str], env: Mapping[str, str], memory_bytes: int | None,
                     die_with_launcher: bool, output_fd: int) -> Launched:
        """Start ``argv`` with its output on ``output_fd`` (the caller keeps and closes its
        copy). LaunchError if its exec failed, LauncherGone if the launcher died first."""
        if self._gone is not None:
            raise LauncherGone(self._gone)
        rid = next(self._ids)
        msg = json.dumps({"id": rid, "argv": list(argv), "env": dict(env),
                          "memory": memory_bytes, "pdeath": die_with_launcher},
                         separators=(",", ":")).encode()
        if len(msg) > launcher.MAX_PACKET:
            raise LaunchError(f"launch request of {len(msg)} bytes is over the "
                              f"{launcher.MAX_PACKET}-byte limit (environment too large?)")
        reply = self.loop.create_future()
        self._pending[rid] = reply
        self._outbox.append((msg, os.dup(output_fd)))  # ours until sent
        self._flush()
        try:
            async with asyncio.timeout(LAUNCH_REPLY_S):
                return await asyncio.shield(reply)
        except TimeoutError:
            self._proc.kill()
            self._die(f"no answer to a launch within {LAUNCH_REPLY_S:g} s; killed it")
            raise LauncherGone(self._gone) from None

    def _flush(self) -> None:
        while self._outbox and self._gone is None:
            msg, fd = self._outbox[0]
            try:
                self._sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", [fd]))])
            except BlockingIOError:
                self.loop.add_writer(self._sock.fileno(), self._flush)
                return
            except OSError as exc:
                self._die(f"cannot write to the launcher: {exc}")
                return
            self._outbox.popleft()
            os.close(fd)
        if self._gone is None:
            self.loop.remove_writer(self._sock.fileno())

    def _readable(self) -> None:
        while self._gone is None:
            try:
                data = self._sock.recv(_REPLY_MAX)
            except BlockingIOError:
                return
            except OSError as exc:
                self._die(f"cannot read from the launcher: {exc}")
                return
            if not data:
                self._die("the launcher closed its socket")
                return
            try:
                self._handle(json.loads(data))
            except (ValueError, KeyError, TypeError) as exc:
                self._die(f"the launcher sent {data[:200]!r}: {exc}")

    def _handle(self, msg: dict) -> None:
        if "exit" in msg:
            exited = self._exits.pop(int(msg["exit"]), None)
            if exited is not None and not exited.done():
                exited.set_result(int(msg["code"]))
            return
        reply = self._pending.pop(int(msg["id"]), None)
        if reply is None or reply.done():
            if "pid" in msg:  # its launch was abandoned: still reap it into the void
                self._exits[int(msg["pid"])] = self.loop.create_future()
            return
        if "error" in msg:
            reply.set_exception(LaunchError(msg["error"]))
        else:
            pid = int(msg["pid"])
            # its exit may be in the very next packet, before the launch's caller resumes
            self._exits[pid] = exited = self.loop.create_future()
            reply.set_result(Launched(pid, exited))

    def _die(self, why: str, closing: bool = False) -> None:
        if self._gone is not None:
            return
        code = self._proc.poll()
        self._gone = why if code is None else f"{why} (launcher pid {self.pid} exit code {code})"
        log.log(logging.DEBUG if closing else logging.WARNING, "task launcher (pid %d) is gone: %s",
                self.pid, self._gone)
        self.loop.remove_reader(self._sock.fileno())
        self.loop.remove_writer(self._sock.fileno())
        self._sock.close()
        for _, fd in self._outbox:
            os.close(fd)
        self._outbox.clear()
        futures: list[asyncio.Future] = [*self._pending.values(), *self._exits.values()]
        for fut in futures:
            if not fut.done():
                fut.set_exception(LauncherGone(self._gone))
                fut.exception()  # a caller may have stopped waiting: no "never retrieved"
        self._pending.clear()
        self._exits.clear()

    async def close(self) -> None:
        """Close the socket (the launcher exits) and reap the launcher."""
        self._die("closed by the agent", closing=True)
        try:
            await asyncio.to_thread(self._proc.wait, _CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            log.error("task launcher (pid %d) did not exit within %g s; killing it",
                      self.pid, _CLOSE_WAIT_S)
            self._proc.kill()
            await asyncio.to_thread(self._proc.wait)
