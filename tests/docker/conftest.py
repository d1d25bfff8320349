"""Fixtures for the Docker suite: a live engine and the locally built images."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "compose" / "build-images.sh"
IMAGES = ("dodoor-base:bookworm", "dodoor:latest", "dodoor-task:busybox", "dodoor-task:python",
          "dodoor-prometheus:latest")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """A client to the local engine; the suite skips when none answers."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
        pytest.skip(f"no Docker engine answers: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def images(docker_client) -> tuple[str, ...]:
    """Builds the project's images with compose/build-images.sh when any is missing."""
    from docker.errors import ImageNotFound

    missing = []
    for name in IMAGES:
        try:
            docker_client.images.get(name)
        except ImageNotFound:
            missing.append(name)
    if missing:
        proc = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"build-images.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return IMAGES


def labelled(client, agent_id: str) -> list:
    """Every container (running or not) carrying this agent's label.

    Sparse listing: a full listing inspects each container and races with removal.
    """
    return client.containers.list(all=True, sparse=True,
                                  filters={"label": f"dodoor.agent_id={agent_id}"})


@pytest.fixture
def agent_id(docker_client, images) -> Iterator[str]:
    """A fresh agent id; asserts the test left no container behind, then cleans up anyway."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    leftovers = labelled(docker_client, name)
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, f"containers left behind: {[c.id[:12] for c in leftovers]}"
