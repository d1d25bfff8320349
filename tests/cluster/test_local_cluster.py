"""`dodoor cluster up` machinery and `dodoor submit`, with real processes on 127.0.0.1."""

import socket
import subprocess
import sys
import urllib.request

import pytest

from scheduler.localcluster import ClusterSettings, LocalCluster


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
    assert "'state': 'succeeded'" in done.stdout
    assert "'node': 'node-00" in done.stdout


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
def test_a_component_that_dies_at_start_is_reported_with_its_log(tmp_path):
    base = _free_base_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", base))  # the load store's port is taken
    blocker.listen()
    try:
        cluster = LocalCluster(ClusterSettings(agents=1, schedulers=1, base_port=base,
                                               workdir=tmp_path / "c", startup_timeout_s=20))
        with pytest.raises(RuntimeError, match=r"loadstore exited with code 2; see .*loadstore\.log"):
            cluster.start()
    finally:
        blocker.close()
