"""What a container adds to a task's run time, measured on this machine.

A trace task replayed on docker agents runs ``dodoor-task sleep <duration>`` in a
fresh container, so its slot is held for the duration *plus* the engine's
create, start, wait and remove. The simulator knows nothing of Docker; told this
overhead (``SimSettings.start_overhead_ms``) it holds the slot that much longer,
as the live agent does. Measured here with the Docker SDK directly, on the
container the agent's executor would create for a zero-length trace task (its own
spec builder: same image, command, limits and labels), created, started, waited
for and removed as the executor does.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from dodoor.resources import Task
from node_agent.docker_executor import BUSYBOX_IMAGE, DockerExecutor, DockerSettings
from node_agent.warm_docker import DockerWarmRuntime

log = logging.getLogger(__name__)
IMAGE = BUSYBOX_IMAGE


def container_overhead_ms(runs: int = 5, image: str = IMAGE, concurrency: int = 1) -> float:
    """Median wall time of create + start + wait + remove of a zero-length task, in ms.

    ``concurrency`` containers go through the engine at once in each of ``runs``
    rounds, as on a cluster whose slots are all busy: on a small host the engine
    and the kernel are shared, and the overhead grows with the number of
    containers in flight. One round first warms the engine's caches and is not
    counted. Raises ``RuntimeError`` naming the cause when no engine answers or
    the image is missing.
    """
    client = _client(runs, image, concurrency, "container")
    # the agent id labels every probe container, so none is mistaken for a real agent's
    label = f"dodoor-overhead-{uuid.uuid4().hex[:8]}"
    executor = DockerExecutor(DockerSettings(agent_id=label, default_image=image,
                                             allowed_images=frozenset({image})), client=client)

    def one() -> float:
        task = Task(f"{label}-{uuid.uuid4().hex[:8]}", cores=1.0, memory_mb=64.0, duration_ms=0.0)
        task_image, command = executor.image_and_command(task)
        t0 = time.perf_counter()
        container = client.containers.create(**executor.container_spec(task, task_image, command))
        try:
            container.start()
            container.wait()
            container.logs(tail=20)
        finally:
            container.remove(force=True)
        return (time.perf_counter() - t0) * 1000.0

    times: list[float] = []
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            for i in range(runs + 1):
                batch = list(pool.map(lambda _: one(), range(concurrency)))
                if i:
                    times += batch
    finally:
        client.close()
    median = statistics.median(times)
    log.info("container overhead: median %.0f ms over %d containers, %d at a time", median,
             len(times), concurrency)
    return median


def busy_overhead_ms(solo_ms: float, full_ms: float, slots: int, duration_ms: float) -> float:
    """The overhead per task when every slot cycles through container and task.

    ``solo_ms`` is the overhead of one container alone, ``full_ms`` that of
    ``slots`` containers created and removed at once. Assume it grows linearly
    with the other containers in that phase at the same time. With every slot busy
    a slot spends o / (o + duration) of its time there, so
    o = solo + (full − solo)·o / (o + duration): the positive root of
    o² + (duration − full)·o − solo·duration = 0. It is ``full`` for zero-length
    tasks and tends to ``solo`` for long ones.
    """
    if slots < 1 or duration_ms < 0 or not 0 <= solo_ms <= full_ms:
        raise ValueError(f"need slots >= 1, duration >= 0 and 0 <= solo <= full, got "
                         f"{slots}, {duration_ms}, {solo_ms}, {full_ms}")
    if slots == 1:
        return solo_ms
    p = duration_ms - full_ms
    return (-p + math.sqrt(p * p + 4.0 * solo_ms * duration_ms)) / 2.0


def warm_overhead_ms(runs: int = 5, image: str = IMAGE, concurrency: int = 1) -> float:
    """Median wall time of a zero-length task in an already warm container, in ms.

    As :func:`container_overhead_ms`: ``concurrency`` tasks at once in each of
    ``runs`` rounds, after one uncounted round; each task gets limits different
    from its container's last ones, so the ``docker update`` a task of new limits
    pays is in the figure. The containers' own (cold) starts are not.
    """
    client = _client(runs, image, concurrency, "warm")
    label = f"dodoor-overhead-{uuid.uuid4().hex[:8]}"
    runtime = DockerWarmRuntime(client, DockerSettings(
        agent_id=label, allowed_images=frozenset({image})))
    boxes: list[str] = []

    def one(box: str, memory: str) -> float:
        t0 = time.perf_counter()
        runtime.update(box, 1.0, memory)
        code = runtime.run(box, uuid.uuid4().hex[:16], ["dodoor-task", "sleep", "0.000"], {},
                           bytearray())
        if code != 0:
            raise RuntimeError(f"the warm probe task exited with {code} in {image}")
        return (time.perf_counter() - t0) * 1000.0

    times: list[float] = []
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            boxes += pool.map(lambda _: runtime.create(image, 1.0, "64m"), range(concurrency))
            for i in range(runs + 1):
                memory = f"{64 + (i % 2)}m"
                batch = list(pool.map(lambda box: one(box, memory), boxes))
                if i:
                    times += batch
    finally:
        for box in boxes:
            runtime.remove(box)
        client.close()
    median = statistics.median(times)
    log.info("warm overhead: median %.1f ms over %d tasks, %d at a time", median, len(times),
             concurrency)
    return median


def _client(runs: int, image: str, concurrency: int, what: str):
    """A client to the engine, checked to hold ``image``; errors say what is missing."""
    if runs < 1 or concurrency < 1:
        raise ValueError(f"runs and concurrency must be >= 1, got {runs} and {concurrency}")
    try:
        import docker

        client = docker.from_env(max_pool_size=concurrency + 4)
        client.images.get(image)
    except Exception as exc:  # the SDK raises several unrelated types
        raise RuntimeError(f"cannot measure the {what} overhead with {image}: {exc} "
                           "(is the engine up and were compose/build-images.sh's images built?)"
                           ) from exc
    return client
