"""The locally built images: idempotent build, and what each image can do."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.docker.conftest import BUILD_SCRIPT, IMAGES

# The first test also builds the images (about 2.5 min from nothing): allow for it.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]


def run(client, image: str, command: list[str], **kwargs) -> tuple[int, str]:
    container = client.containers.run(image, command, detach=True, network_mode="none", **kwargs)
    try:
        code = container.wait(timeout=120)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


def test_second_build_skips_every_task_image(images):
    # From a different cwd, to show the script finds its own files.
    proc = subprocess.run([str(BUILD_SCRIPT), "--only", "dodoor-task:busybox",
                           "--only", "dodoor-task:python"],
                          capture_output=True, text=True, timeout=900, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert "exists, skipped: dodoor-task:busybox" in proc.stdout
    assert "exists, skipped: dodoor-task:python" in proc.stdout
    assert "exists, skipped: dodoor-base:bookworm" in proc.stdout
    assert "built:" not in proc.stdout


def test_unknown_argument_is_refused():
    proc = subprocess.run([str(BUILD_SCRIPT), "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown argument: --bogus" in proc.stderr


def test_every_image_exists(docker_client, images):
    tags = {tag for image in docker_client.images.list() for tag in image.tags}
    assert set(IMAGES) <= tags


def test_base_has_python_311(docker_client, images):
    code, out = run(docker_client, "dodoor-base:bookworm", ["python3", "--version"])
    assert code == 0
    assert out.startswith("Python 3.11.")


def test_daemon_image_runs_the_cli_offline(docker_client, images):
    code, out = run(docker_client, "dodoor:latest", ["agent", "--help"])
    assert code == 0, out
    assert "--executor {sleep,process,docker}" in out
    code, out = run(docker_client, "dodoor:latest", ["--help"],
                    entrypoint=["python", "-c", "import docker, numpy, aiohttp, msgpack, "
                                "dodoor, scheduler, node_agent, workloads; print('ok')"])
    assert (code, out.strip()) == (0, "ok")


@pytest.mark.parametrize("command, expected", [
    (["dodoor-task", "sleep", "0.1"], ""),
    (["dodoor-task", "burn", "0.5", "2"], "burned 2 thread(s) for 0.5 s"),
    (["dodoor-task", "touch", "8"], f"touched {8 * 1024 * 1024} bytes"),
])
def test_busybox_workloads(docker_client, images, command, expected):
    code, out = run(docker_client, "dodoor-task:busybox", command)
    assert code == 0, out
    assert expected in out


def test_busybox_runs_unprivileged_and_rejects_bad_usage(docker_client, images):
    code, out = run(docker_client, "dodoor-task:busybox", ["id", "-u"])
    assert (code, out.strip()) == (0, "65534")
    code, out = run(docker_client, "dodoor-task:busybox", ["dodoor-task", "fly"])
    assert code == 64
    assert "usage: dodoor-task" in out


@pytest.mark.parametrize("function, size, key", [
    ("floatops", 100000, "checksum"), ("matmul", 64, "checksum"), ("linsolve", 200, "residual"),
])
def test_python_functions(docker_client, images, function, size, key):
    code, out = run(docker_client, "dodoor-task:python", [function, str(size)])
    assert code == 0, out
    result = json.loads(out)
    assert result["function"] == function
    assert result["size"] == size
    assert key in result
    if function == "linsolve":
        assert result["residual"] < 1e-10
    if function == "matmul":
        assert result["flops"] == 2.0 * size**3


def test_python_function_rejects_a_bad_size(docker_client, images):
    code, out = run(docker_client, "dodoor-task:python", ["matmul", "0"])
    assert code == 2
    assert "size and --repeat must be > 0, got size=0" in out


def test_prometheus_image_checks_the_cluster_config_offline(docker_client, images):
    # The compose files at the paths the service mounts them, with a token file as the
    # service writes it: promtool then also resolves the rule file and the token file.
    prom_dir = BUILD_SCRIPT.parent / "prometheus"
    check = ("printf x >/tmp/dodoor-token && promtool check config "
             "/etc/dodoor/prometheus/prometheus.yml")
    code, out = run(docker_client, "dodoor-prometheus:latest", ["-c", check],
                    entrypoint=["/bin/sh"],
                    volumes={str(prom_dir): {"bind": "/etc/dodoor/prometheus", "mode": "ro"}})
    assert code == 0, out
    assert "SUCCESS: 8 rules found" in out
    code, out = run(docker_client, "dodoor-prometheus:latest", ["-un"], entrypoint=["id"])
    assert (code, out.strip()) == (0, "prometheus")
