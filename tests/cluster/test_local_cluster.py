"""`dodoor cluster up` machinery and `dodoor submit`, with real processes on 127.0.0.1."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from dodoor.tools.localcluster import ClusterSettings, LocalCluster


def _free_base_port() -> int:
    """A base port P with P, P+10 and P+100..P+101 free (the layout the cluster uses)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + 110 > 65000:
            continue
        ports = [base, base + 10, base + 100, base + 101]
        if all(_is_free(p) for p in ports):
            return base
    pytest.skip("no free port range on loopback")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def cluster(tmp_path):
    settings = ClusterSettings(agents=2, schedulers=1, base_port=_free_base_port(),
                               workdir=tmp_path / "cluster")
    with LocalCluster(settings) as running:
        yield running


def test_submit_runs_trace_tasks_to_success(cluster, tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("".join(f"{i},1.0,512,0,{200 + 10 * i},{i},simulated,medium\n" for i in range(12)))
    done = subprocess.run(
        [sys.executable, "-m", "dodoor", "submit", "--url", cluster.scheduler_urls[0],
         "--trace", str(trace), "--batch", "5", "--timeout", "60"],
        capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[0] == "succeeded: 12"
    assert "submitted 12 tasks" in done.stderr


def test_submit_single_task_reports_its_state_and_node(cluster):
    done = subprocess.run(
        [sys.executable, "-m", "dodoor", "submit", "--url", cluster.scheduler_urls[0],
         "--cores", "1", "--memory-mb", "128", "--duration-ms", "100"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    summary, header, row = done.stdout.strip().splitlines()
    assert summary == "succeeded: 1"
    assert header.split() == ["ID", "STATE", "NODE", "EXIT", "REASON"]
    assert row.split()[1:] == ["succeeded", row.split()[2], "0"]
    assert row.split()[2].startswith("node-00")


def test_submit_of_a_task_no_node_can_hold_is_refused_with_the_reason(cluster):
    done = subprocess.run(
        [sys.executable, "-m", "dodoor", "submit", "--url", cluster.scheduler_urls[0],
         "--cores", "64", "--memory-mb", "128"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "422" in done.stderr and "cores" in done.stderr


def test_stop_terminates_every_process(tmp_path):
    settings = ClusterSettings(agents=1, schedulers=1, base_port=_free_base_port(),
                               workdir=tmp_path / "c")
    cluster = LocalCluster(settings)
    cluster.start()
    urls = [cluster.loadstore_url, *cluster.scheduler_urls, *cluster.agent_urls]
    for url in urls:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
            assert resp.status == 200
    cluster.stop()
    for url in urls:
        with pytest.raises(OSError):
            urllib.request.urlopen(url + "/healthz", timeout=1)


def test_submit_json_prints_one_object_per_task_and_plain_progress(cluster):
    done = subprocess.run(
        [sys.executable, "-m", "dodoor", "submit", "--url", cluster.scheduler_urls[0],
         "--count", "3", "--duration-ms", "50", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert list(line) == ["id", "state", "node", "exit_code", "reason"]
        assert line["state"] == "succeeded" and line["exit_code"] == 0
    # stderr is a pipe here, not a terminal: whole lines, no carriage returns
    assert "\r" not in done.stderr
    assert "3/3 done" in done.stderr.splitlines()[-2]
    assert done.stderr.splitlines()[-1] == "succeeded: 3"


def test_trace_tasks_take_the_command_after_the_separator(tmp_path):
    settings = ClusterSettings(agents=1, schedulers=1, executor="process",
                               base_port=_free_base_port(), workdir=tmp_path / "c")
    trace = tmp_path / "trace.csv"
    trace.write_text("".join(f"{i},1.0,128,0,100,{i},simulated,short\n" for i in range(3)))
    with LocalCluster(settings) as running:
        done = subprocess.run(
            [sys.executable, "-m", "dodoor", "submit", "--url", running.scheduler_urls[0],
             "--trace", str(trace), "--json", "--", "true"],
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["state"] for line in done.stdout.splitlines()] == ["succeeded"] * 3


def test_submit_to_an_unreachable_cluster_is_one_line_within_seconds():
    with socket.socket() as hung:
        # a listener that never accepts, its queue full: connections to it hang, like a
        # host that drops packets (no address off loopback is ever contacted)
        hung.bind(("127.0.0.1", 0))
        hung.listen(0)
        filler = socket.create_connection(hung.getsockname(), timeout=2)
        closed = f"http://127.0.0.1:{_closed_port()}"
        hung_url = "http://127.0.0.1:%d" % hung.getsockname()[1]
        try:
            for url in (closed, hung_url):
                started = time.monotonic()
                done = subprocess.run(
                    [sys.executable, "-m", "dodoor", "submit", "--url", url, "--count", "3"],
                    capture_output=True, text=True, timeout=60,
                )
                took = time.monotonic() - started
                assert done.returncode == 1, done.stderr
                assert done.stdout == ""
                assert len(done.stderr.splitlines()) == 1, done.stderr
                assert done.stderr.startswith("dodoor submit: no scheduler answered POST /v1/tasks")
                assert url in done.stderr
                assert took < 10, f"{url}: {took:.1f} s"
        finally:
            filler.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
