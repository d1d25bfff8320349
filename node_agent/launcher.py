"""The task launcher: a small process that forks and execs the process executor's tasks.

The agent is a large Python process; forking it for every task (a ``preexec_fn``
rules out ``vfork``/``posix_spawn``) cost it milliseconds of CPU per task. So the
agent starts this launcher once, a fresh interpreter with nothing but the standard
library, and sends it launch requests over a ``SOCK_SEQPACKET`` socketpair; forking
a process this small is cheap, and the cost is no longer on the agent's event loop.

Messages are JSON, one per packet. Agent → launcher::

    {"id": n, "argv": [...], "env": {...}, "memory": bytes | null, "pdeath": bool}

with the write end of the task's output pipe attached (``SCM_RIGHTS``). The
child leads a new session (its own process group), has ``RLIMIT_AS`` = ``memory``
and, when ``pdeath``, ``PR_SET_PDEATHSIG`` = SIGKILL, stdin from ``/dev/null`` and
stdout and stderr on the pipe. Launcher → agent::

    {"id": n, "pid": p}          the task runs (its exec succeeded)
    {"id": n, "error": "..."}    it could not be started
    {"exit": p, "code": c}       task leader p ended; c as subprocess's returncode

The launcher is not the record of a task: the agent journals each task's process
group itself, and the exit-status shim writes the status to a file, so nothing is
lost when the launcher dies. It exits when the agent's end of the socket closes
(the agent exited or was killed); leaders started with ``pdeath`` then get
SIGKILL from the kernel, the others run on and are adopted by the restarted agent.

Run as ``python -I -S launcher.py FD`` (FD: the launcher's end of the socketpair); it
imports nothing of the project, so it runs by path from any directory.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
MAX_PACKET = 1 << 20  # a request carries the task's whole environment
_ERRNO = struct.Struct("i")


class _Prctl:
    """prctl(2), looked up on first use: ctypes is a good part of the launcher's start-up,
    and only tasks that die with their launcher need it."""

    def __init__(self) -> None:
        self._fn = None
        self._looked = False

    def pdeathsig_kill(self) -> bool:
        """In the child: ask for SIGKILL when the launcher dies; False if there is no prctl."""
        if self._fn is None:
            return False
        import ctypes  # already imported by lookup(), in the launcher

        self._fn(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL))
        return True

    def lookup(self) -> None:
        """In the launcher, before the fork: the child should only call it."""
        if self._looked:
            return
        self._looked = True
        if not sys.platform.startswith("linux"):
            return
        try:
            import ctypes

            self._fn = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError, ImportError):
            self._fn = None


def _exec_child(req: dict, out_fd: int, err_w: int, prctl: _Prctl, parent: int) -> None:
    """In the forked child: set the task's limits and exec it; never returns."""
    try:
        os.setsid()
        memory = req.get("memory")
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if req.get("pdeath") and prctl.pdeathsig_kill():
            if os.getppid() != parent:  # the launcher died before the prctl
                os._exit(137)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        if out_fd > 2:
            os.close(out_fd)  # received without close-on-exec: the task needs only 1 and 2
        # Python ignores these at start-up; an ignored signal stays ignored across exec
        for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        os.execvpe(req["argv"][0], req["argv"], req["env"])
    except BaseException as exc:  # noqa: BLE001 - reported to the launcher, then exit
        code = exc.errno if isinstance(exc, OSError) and exc.errno else 0
        try:
            os.write(err_w, _ERRNO.pack(code) + str(exc).encode("utf-8", "replace")[:500])
        finally:
            os._exit(127)


def _launch(req: dict, out_fd: int, prctl: _Prctl) -> dict:
    if req.get("pdeath"):
        prctl.lookup()
    err_r, err_w = os.pipe()  # close-on-exec: EOF without data means the exec succeeded
    me = os.getpid()
    try:
        pid = os.fork()
        if pid == 0:
            os.close(err_r)
            _exec_child(req, out_fd, err_w, prctl, me)
        os.close(err_w)
        err_w = -1
        chunks = []
        while chunk := os.read(err_r, 1024):
            chunks.append(chunk)
    finally:
        os.close(err_r)
        if err_w >= 0:
            os.close(err_w)
    if chunks:
        os.waitpid(pid, 0)  # it exited at once: reap it here, no exit message
        data = b"".join(chunks)
        return {"id": req["id"], "error": data[_ERRNO.size:].decode("utf-8", "replace")}
    return {"id": req["id"], "pid": pid}


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(sock: socket.socket, msg: dict) -> None:
    sock.sendall(json.dumps(msg, separators=(",", ":")).encode())


def serve(sock: socket.socket) -> None:
    """Launch what the agent asks until it closes its end of ``sock``."""
    prctl = _Prctl()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "agent")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    while True:
        for key, _ in sel.select():
            if key.data == "child":
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
                _reap(sock)
                continue
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, 1)
            if not data:
                return  # the agent is gone
            req = None
            try:
                req = json.loads(data)
                if not fds:
                    reply = {"id": req.get("id"), "error": "no output pipe attached"}
                else:
                    reply = _launch(req, fds[0], prctl)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                reply = {"id": req.get("id") if isinstance(req, dict) else None,
                         "error": f"bad launch request: {exc}"}
            finally:
                for fd in fds:
                    os.close(fd)
            _send(sock, reply)
        _reap(sock)  # a SIGCHLD may have come while launching


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[1]))
    sock.set_inheritable(False)
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the agent is gone
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
