"""``dodoor cluster up`` as an operator runs it: real processes on 127.0.0.1.

It must fail fast and clearly when its processes fail, check what it is given
before starting anything, report a component that dies later (and reap it),
and start fresh unless told to resume.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dodoor.tools.localcluster import ClusterError, ClusterSettings, LocalCluster, _Proc
from tests.cluster.test_local_cluster import _free_base_port

REPO = Path(__file__).resolve().parents[2]


def cluster_up(*args: str, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dodoor", "cluster", "up", "--workdir", str(workdir), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run_cluster_up(*args: str, workdir: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dodoor", "cluster", "up", "--workdir", str(workdir), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " INFO " not in line]


@pytest.mark.parametrize("args, names", [
    (["--agents", "0"], "--agents: must be >= 1, got 0"),
    (["--base-port", "70000"], "--base-port: must be in [1, 65430]"),
    (["--base-port", "65500", "--agents", "2"], "--base-port"),
    (["--policy", "ideal"], "'ideal' runs in the simulator only"),
    (["--policy", "dodoor:d=0"], "d: must be >= 1, got 0"),
    (["--policy", "dodoor", "--param", "zz=1"], "zz: unknown policy setting"),
])
def test_bad_settings_are_one_line_and_start_nothing(tmp_path, args, names):
    workdir = tmp_path / "c"
    done = run_cluster_up(*args, workdir=workdir, timeout=30)
    assert done.returncode == 2
    (line,) = error_lines(done.stderr)
    assert line.startswith("dodoor cluster up: error: ") and names in line, line
    assert done.stdout == ""
    assert not workdir.exists()  # checked before any process (or its log) was made


def test_ports_held_by_another_cluster_fail_fast_with_the_childs_error(tmp_path):
    base = _free_base_port()
    first = LocalCluster(ClusterSettings(agents=2, schedulers=1, base_port=base,
                                         workdir=tmp_path / "first"))
    with first:
        started = time.monotonic()
        done = run_cluster_up("--agents", "2", "--schedulers", "1", "--base-port", str(base),
                              workdir=tmp_path / "second")
        took = time.monotonic() - started
        assert done.returncode == 2
        (line,) = error_lines(done.stderr)
        assert re.match(r"dodoor cluster up: error: loadstore \(pid \d+\) exited with code 2: "
                        r"dodoor loadstore: error: cannot serve on 127\.0\.0\.1:\d+: .*"
                        r"address already in use \(log: .*loadstore\.log\)$", line), line
        assert "started" not in done.stderr and "Ctrl-C" not in done.stdout
        assert took < 20  # as soon as the child exits, not after the 30-s health timeout
        # the first cluster is untouched
        with urllib.request.urlopen(first.loadstore_url + "/healthz", timeout=2) as resp:
            assert json.loads(resp.read())["pid"] == first.pids["loadstore"]


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Answers /healthz as a load store, but as a process other than the one started."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "role": "loadstore", "pid": 1}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_healthz_from_another_process_is_not_taken_for_the_one_started(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    cluster = LocalCluster(ClusterSettings(agents=1, schedulers=1, base_port=_free_base_port(),
                                           workdir=tmp_path / "c", startup_timeout_s=1.5))
    # a started process that never answers itself: only the impostor does
    proc = _Proc("loadstore", url, [], {"role": "loadstore"},
                 popen=subprocess.Popen(["sleep", "30"]))
    cluster._procs.append(proc)
    try:
        pattern = (r"another process answers at \S+ \(\{'role': 'loadstore', 'pid': 1\}\), "
                   r"not the one started \(pid \d+\)")
        with pytest.raises(ClusterError, match=pattern):
            cluster._wait_healthy(proc)
    finally:
        cluster.stop(timeout_s=1)
        server.shutdown()


def _read_until(stream, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no {pattern!r} in {seen}")


def _is_zombie_or_gone(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    return "zombie" if stat.rsplit(")", 1)[1].split()[0] == "Z" else "running"


def test_a_component_that_dies_later_is_reported_and_reaped(tmp_path):
    up = cluster_up("--agents", "2", "--schedulers", "1", "--base-port", str(_free_base_port()),
                    workdir=tmp_path / "c")
    try:
        agent_pid = int(_read_until(up.stderr, r"started agent-1 \(pid (\d+)\)", 60).group(1))
        _read_until(up.stdout, "Ctrl-C stops the cluster", 30)
        os.kill(agent_pid, signal.SIGKILL)
        line = _read_until(up.stderr, rf"agent-1 \(pid {agent_pid}\) exited with code -9", 10)
        assert line.string.startswith("dodoor cluster up: ")
        time.sleep(0.2)
        assert _is_zombie_or_gone(agent_pid) == "gone"
        assert up.poll() is None  # the rest of the cluster keeps running
    finally:
        up.send_signal(signal.SIGTERM)
        out, err = up.communicate(timeout=30)
    assert up.returncode == 1
    assert "cluster stopped; 1 component(s) had died" in err


def _post_task(url: str, task_id: str) -> None:
    """Submit as a client does: a 503 ("retry later", e.g. while a new load store hears
    every agent's ids, docs/guarantees.md) is retried with the same id."""
    body = json.dumps({"tasks": [{"id": task_id, "cores": 1, "memory_mb": 64,
                                  "duration_ms": 20}]}).encode()
    deadline = time.monotonic() + 10
    while True:
        request = urllib.request.Request(url + "/v1/tasks", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status == 202
                return
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def _state(url: str, task_id: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/tasks/{task_id}", timeout=5) as resp:
                state = json.loads(resp.read())["state"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return "unknown"
            raise
        if state == "succeeded" or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def test_each_start_is_fresh_unless_resumed(tmp_path):
    workdir = tmp_path / "c"

    def settings(resume: bool) -> ClusterSettings:
        return ClusterSettings(agents=1, schedulers=1, base_port=_free_base_port(),
                               workdir=workdir, resume=resume)

    workdir.mkdir()
    (workdir / "notes.log").write_text("the operator's own file\n")
    with LocalCluster(settings(False)) as first:
        _post_task(first.scheduler_urls[0], "fixed-id-1")
        assert _state(first.scheduler_urls[0], "fixed-id-1") == "succeeded"
    assert (workdir / "loadstore.json").exists()
    with LocalCluster(settings(True)) as resumed:  # the journal still knows the id
        assert _state(resumed.scheduler_urls[0], "fixed-id-1") == "succeeded"
    with LocalCluster(settings(False)) as fresh:  # a new run: the id is free again
        assert _state(fresh.scheduler_urls[0], "fixed-id-1") == "unknown"
        _post_task(fresh.scheduler_urls[0], "fixed-id-1")
        assert _state(fresh.scheduler_urls[0], "fixed-id-1") == "succeeded"
    assert (workdir / "notes.log").read_text() == "the operator's own file\n"


def test_a_fresh_start_leaves_a_running_clusters_workdir_alone(tmp_path):
    workdir = tmp_path / "c"
    with LocalCluster(ClusterSettings(agents=1, schedulers=1, base_port=_free_base_port(),
                                      workdir=workdir)):
        journal = workdir / "node-000.journal.sqlite"
        assert journal.exists()
        second = LocalCluster(ClusterSettings(agents=1, schedulers=1, base_port=_free_base_port(),
                                              workdir=workdir))
        with pytest.raises(ClusterError, match="is in use: a running agent holds"):
            second.start()
        assert journal.exists()
