"""One real load store, agent and scheduler on 127.0.0.1, shared by a module's hostile tests."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

import psutil
import pytest

from tests.daemons.conftest import Daemon, free_port, http_json
from tests.faults.conftest import start_daemon


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes


def raw_request(url: str, data: bytes | None, content_type: str | None = None,
                token: str | None = None, method: str | None = None,
                timeout: float = 10.0) -> Reply:
    """One request with an arbitrary body; never raises for an HTTP error status."""
    req = urllib.request.Request(url, data=data, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, resp.headers.get("Content-Type", ""), resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers.get("Content-Type", ""), exc.read())


@dataclass
class Trio:
    loadstore: Daemon
    agent: Daemon
    scheduler: Daemon
    token: str | None

    @property
    def daemons(self) -> list[Daemon]:
        return [self.loadstore, self.agent, self.scheduler]

    def rss(self) -> list[int]:
        return [psutil.Process(d.proc.pid).memory_info().rss for d in self.daemons]

    def all_healthy(self) -> bool:
        return all(d.proc.poll() is None and http_json(d.url + "/healthz")[0] == 200
                   for d in self.daemons)


def start_trio(workdir, token: str | None = None) -> Trio:
    env = {"DODOOR_TOKEN": token} if token else {}
    started: list[Daemon] = []

    def start(args: list[str], port: int) -> Daemon:
        d = start_daemon(args, port, env, workdir)
        started.append(d)
        return d

    try:
        lp, ap, sp = free_port(), free_port(), free_port()
        ls = start(["loadstore", "--port", str(lp), "--b", "5"], lp)
        agent = start(["agent", "--port", str(ap), "--id", "node-h", "--loadstore", ls.url,
                       "--cores", "4", "--memory-mb", "4096", "--disk-mb", "100", "--slots", "4",
                       "--journal", str(workdir / "node-h.sqlite"), "--report-interval-ms", "50"],
                      ap)
        sched = start(["scheduler", "--port", str(sp), "--id", "sched-h", "--loadstore", ls.url,
                       "--seed", "7"], sp)
        deadline_ok = False
        for _ in range(200):
            code, body = http_json(sched.url + "/healthz")
            if code == 200 and body["nodes"] == 1:
                deadline_ok = True
                break
            import time

            time.sleep(0.05)
        assert deadline_ok, "the scheduler never saw the agent"
    except BaseException:
        for d in reversed(started):
            d.stop()
        raise
    return Trio(ls, agent, sched, token)


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    t = start_trio(tmp_path_factory.mktemp("hostile"))
    yield t
    for d in reversed(t.daemons):
        d.stop()


@pytest.fixture(scope="module")
def token_trio(tmp_path_factory):
    t = start_trio(tmp_path_factory.mktemp("auth"), token="hostile-test-token")
    yield t
    for d in reversed(t.daemons):
        d.stop()
