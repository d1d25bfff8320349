"""What a container adds to a task's run time, measured on this machine.

A trace task replayed on docker agents runs ``dodoor-task sleep <duration>`` in a
fresh container, so its slot is held for the duration *plus* the engine's
create, start, wait and remove. The simulator knows nothing of Docker; told this
overhead, alone and with every slot starting at once
(``SimSettings.start_overhead_ms`` / ``start_overhead_full_ms``), it holds the
slot that much longer, as the live agent does. Measured here with the Docker SDK
directly (the scheduler package may not import the agent's executor, DESIGN §10),
with the same image, command shape, limits and removal as the executor.
"""

from __future__ import annotations

import logging
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)
IMAGE = "dodoor-task:busybox"


def container_overhead_ms(runs: int = 5, image: str = IMAGE, concurrency: int = 1) -> float:
    """Median wall time of create + start + wait + remove of a zero-length task, in ms.

    ``concurrency`` containers go through the engine at once in each of ``runs``
    rounds, as on a cluster whose slots are all busy: on a small host the engine
    and the kernel are shared, and the overhead grows with the number of
    containers in flight. One round first warms the engine's caches and is not
    counted. Raises ``RuntimeError`` naming the cause when no engine answers or
    the image is missing.
    """
    if runs < 1 or concurrency < 1:
        raise ValueError(f"runs and concurrency must be >= 1, got {runs} and {concurrency}")
    try:
        import docker

        client = docker.from_env(max_pool_size=concurrency + 4)
        client.images.get(image)
    except Exception as exc:  # the SDK raises several unrelated types
        raise RuntimeError(f"cannot measure the container overhead with {image}: {exc} "
                           "(is the engine up and were compose/build-images.sh's images built?)"
                           ) from exc
    label = f"dodoor-overhead-{uuid.uuid4().hex[:8]}"

    def one() -> float:
        t0 = time.perf_counter()
        container = client.containers.create(
            image, ["dodoor-task", "sleep", "0.000"], labels={"dodoor.agent_id": label},
            nano_cpus=int(1e9), mem_limit="64m", memswap_limit="64m", network_mode="none",
            cap_drop=["ALL"], security_opt=["no-new-privileges"], detach=True)
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

