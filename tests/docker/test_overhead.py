"""The container overhead probe that evaluate hands to the simulator."""

from __future__ import annotations

import pytest

from dodoor.tools.overhead import container_overhead_ms, warm_overhead_ms

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]


def test_overhead_is_measured_and_leaves_no_container(docker_client, images):
    before = {c.id for c in docker_client.containers.list(all=True)}
    ms = container_overhead_ms(runs=3)
    # create + start + wait + remove of a real container: never free, never a minute
    assert 1.0 < ms < 60_000.0
    assert {c.id for c in docker_client.containers.list(all=True)} == before


def test_a_missing_image_is_a_clear_error(docker_client):
    with pytest.raises(RuntimeError, match="no-such-image:0"):
        container_overhead_ms(runs=1, image="no-such-image:0")


def test_concurrent_containers_are_measured_each(docker_client, images):
    before = {c.id for c in docker_client.containers.list(all=True)}
    assert 1.0 < container_overhead_ms(runs=1, concurrency=3) < 60_000.0
    assert {c.id for c in docker_client.containers.list(all=True)} == before


@pytest.mark.parametrize("runs, concurrency", [(0, 1), (1, 0)])
def test_runs_and_concurrency_must_be_positive(runs, concurrency):
    with pytest.raises(ValueError, match="must be >= 1"):
        container_overhead_ms(runs=runs, concurrency=concurrency)


def test_the_warm_figure_is_measured_leaves_no_container_and_beats_the_cold_one(docker_client,
                                                                                images):
    before = {c.id for c in docker_client.containers.list(all=True)}
    warm = warm_overhead_ms(runs=3, concurrency=2)
    cold = container_overhead_ms(runs=1)
    assert 0.1 < warm < cold
    assert {c.id for c in docker_client.containers.list(all=True)} == before
