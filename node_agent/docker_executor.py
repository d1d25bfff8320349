"""The Docker executor: one container per task, with the task's limits.

Tasks run as sibling containers through the engine's API (``docker.from_env()``):
``nano_cpus`` from the task's cores, ``mem_limit`` (and an equal swap limit, so
the limit is real) from its memory, no privileges, every capability dropped, no
mounts, no network by default. Images are never pulled: an image outside the
allow-list or absent from the host fails the task with a reason, never the
agent. Containers carry the labels ``dodoor.task_id`` and ``dodoor.agent_id`` so
a restarted agent can find what its previous run left behind (``reconcile``).

A finished (or timed-out, hence killed) container is kept until the agent has
journaled its result and calls ``forget``: an agent killed in between finds
the exited container at restart and journals its result instead of running
the task again. At restart, containers whose journal row is unfinished are
adopted (running: with the wall limit counted from their real start) or
collected (exited); any other container of this agent is removed.
Tasks that opt in to warm containers (``docker_spec.wants_warm``) run instead
as jobs of the executor's :class:`~node_agent.warm_pool.WarmPool`; see
docs/docker.md. The pool's idle reaper is a task this executor owns (``close``).
Every SDK call blocks, so each goes through ``asyncio.to_thread`` — except the
long waits for containers to exit, which run on the executor's own thread pool:
the loop's default pool has only a few threads (CPU count + 4), and a busy agent
holding them all in waits would stall every other blocking call in the process.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Sequence

from dodoor.resources import Task
from dodoor.taskstates import FAILED
from node_agent import docker_spec
from node_agent.docker_spec import (AGENT_LABEL, BUSYBOX_IMAGE, KILLED_EXIT_CODE,  # noqa: F401
                                    LOG_TAIL_BYTES, PYTHON_IMAGE, TASK_LABEL, WARM_LABEL,
                                    DockerSettings, TaskSpecError, exit_result, explain,
                                    limits, task_env, timed_out, wants_warm)
from node_agent.executor import Adopted, Interrupted, StartHook, TaskResult
from node_agent.warm_docker import DockerWarmRuntime
from node_agent.warm_pool import WarmPool

log = logging.getLogger(__name__)


class DockerExecutor:
    """Runs each task in its own container; see the module docstring.

    ``settings`` is a :class:`DockerSettings` or the agent's settings object
    (anything with ``node_id``). ``client`` is injectable; by default the
    engine named by the environment (``DOCKER_HOST`` or the local socket).
    """

    name = "docker"
    outlives_agent = True

    def __init__(self, settings: Any = None, client: Any = None) -> None:
        if settings is None:
            settings = DockerSettings()
        elif not isinstance(settings, DockerSettings):
            settings = DockerSettings.from_agent(settings)
        self.settings: DockerSettings = settings
        if client is None:
            import docker  # imported here so the other executors never need the SDK

            # One connection per concurrent wait, plus headroom for the short calls.
            client = docker.from_env(max_pool_size=settings.max_waits + 16)
        self.client = client
        self._wait_pool = ThreadPoolExecutor(settings.max_waits,
                                             thread_name_prefix="docker-wait")
        # task id -> (container, wall-clock deadline, wall limit in s) of adopted containers
        self._adopted: dict[str, tuple[Any, float, float]] = {}
        # Ended containers kept until the agent has journaled their result (``forget``).
        self._held: dict[str, Any] = {}
        self._host_cpus: int | None = None
        self.warm = WarmPool(DockerWarmRuntime(client, settings), settings.warm_per_image,
                             settings.warm_idle_s, waits=self._wait_pool)
        self._reaper: asyncio.Task | None = None  # the pool's idle reaper, ended by close

    # -- the container spec (node_agent/docker_spec.py) --------------------
    def image_and_command(self, task: Task) -> tuple[str, list[str]]:
        """The image and command a task runs; raises :class:`TaskSpecError` when it cannot run."""
        return docker_spec.image_and_command(self.settings, task)

    def container_spec(self, task: Task, image: str, command: list[str],
                       host_cpus: int | None = None) -> dict[str, Any]:
        """Keyword arguments for ``containers.create`` of the task's own container."""
        return docker_spec.container_spec(self.settings, task, image, command, host_cpus)

    def wall_limit_s(self, task: Task) -> float:
        """The task's wall limit in seconds (``docker_spec.wall_limit_s``)."""
        return docker_spec.wall_limit_s(self.settings, task)

    # -- the Executor protocol -------------------------------------------
    async def run(self, task: Task, on_start: StartHook | None = None) -> TaskResult:
        try:
            image, command = self.image_and_command(task)
            await asyncio.to_thread(self._check_image, image)
            if self._host_cpus is None:
                info = await asyncio.to_thread(self.client.info)
                self._host_cpus = int(info.get("NCPU") or 0) or None
        except TaskSpecError as exc:
            log.warning("task %s not run: %s", task.task_id, exc)
            return TaskResult(FAILED, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - an engine that does not answer fails the task
            log.warning("task %s not run: the Docker engine failed: %s", task.task_id, exc)
            return TaskResult(FAILED, reason=f"docker engine error: {explain(exc)}")
        if wants_warm(self.settings, task, image, command):
            if self._reaper is None:
                interval = max(0.05, min(self.settings.warm_idle_s / 4, 5.0))
                self._reaper = asyncio.create_task(self.warm.reap_forever(interval),
                                                   name=f"warm-reaper-{self.settings.agent_id}")
            cores, memory = limits(task, self._host_cpus)
            return await self.warm.run(task.task_id, image, command, task_env(task), cores,
                                       memory, self.wall_limit_s(task), on_start)
        spec = self.container_spec(task, image, command, self._host_cpus)
        # Creation cannot be interrupted half-way, so a cancel waits for it to
        # finish and then removes the container instead of leaking it.
        creating = asyncio.ensure_future(asyncio.to_thread(self._create_and_start, spec))
        try:
            container = await asyncio.shield(creating)
        except asyncio.CancelledError:
            try:
                container = await creating
            except Exception:  # noqa: BLE001 - nothing was left running
                raise asyncio.CancelledError from None
            await asyncio.to_thread(self._discard, container, True)
            raise
        except Exception as exc:  # noqa: BLE001 - any engine refusal fails the task, not the agent
            log.warning("task %s: cannot start a container: %s", task.task_id, exc)
            return TaskResult(FAILED, reason=f"cannot start the container: {explain(exc)}")
        try:
            if on_start is not None:
                await on_start(container.id)
            limit_s = self.wall_limit_s(task)
            return await self._finish(task.task_id, container, limit_s, limit_s)
        except asyncio.CancelledError:
            # Shielded so the container goes even though our caller stops waiting.
            await asyncio.shield(asyncio.to_thread(self._discard, container, True))
            raise
        except Exception:
            # A failing on_start hook: the agent fails the task, so it must not run on.
            await asyncio.to_thread(self._discard, container, True)
            raise

    async def forget(self, task_id: str) -> None:
        """The result is journaled: remove the task's container (if this executor holds one),
        or give its warm container back to the pool."""
        if await self.warm.forget(task_id):
            return
        container = self._held.pop(task_id, None)
        if container is not None:
            await asyncio.to_thread(self._discard, container)

    async def reconcile(self, interrupted: Sequence[Interrupted]) -> list[Adopted]:
        """Adopt or collect the containers of unfinished tasks; remove every other one.

        A container whose task the journal holds as finished (or no longer holds)
        must not go on running, nor be adopted: its result, if any, was journaled.
        """
        warm = await self.warm.reconcile(interrupted)
        rows = {row.task_id: row for row in interrupted}
        containers = await asyncio.to_thread(
            self.client.containers.list, all=True,
            filters={"label": f"{AGENT_LABEL}={self.settings.agent_id}"})
        found: dict[str, Adopted] = {}
        removed = 0
        for container in containers:
            task_id = container.labels.get(TASK_LABEL)
            if task_id is None:
                continue
            row = rows.get(task_id)
            status = container.status
            if row is None or task_id in found:
                log.info("removing %s container %s of task %s: its journal row is %s",
                         status, container.short_id, task_id,
                         "unfinished but taken by another container" if row else
                         "finished or gone")
                await asyncio.to_thread(self._discard, container)
                removed += 1
                continue
            limit_s = self.wall_limit_s(row.task)
            if status in ("running", "paused", "restarting"):
                started = _started_at(container)
                if started is None:
                    log.warning("container %s of task %s: no start time; its wall limit "
                                "counts from now", container.short_id, task_id)
                    started = time.time()
                self._adopted[task_id] = (container, started + limit_s, limit_s)
                found[task_id] = Adopted(task_id, running=True)
            elif status in ("exited", "dead"):
                result = await asyncio.to_thread(self._result, container, limit_s)
                self._held[task_id] = container  # removed by ``forget``, once journaled
                found[task_id] = Adopted(task_id, running=False, result=result)
            else:
                # Created but never started: drop it; the journal re-queues the task.
                await asyncio.to_thread(self._discard, container)
                removed += 1
        if found or removed:
            log.info("reconciled the containers of agent %s: %d adopted running, %d exited, "
                     "%d removed", self.settings.agent_id,
                     sum(1 for a in found.values() if a.running),
                     sum(1 for a in found.values() if not a.running), removed)
        return list(found.values()) + warm

    async def wait_adopted(self, task_id: str) -> TaskResult:
        try:
            container, deadline, limit_s = self._adopted.pop(task_id)
        except KeyError as exc:
            raise LookupError(f"no adopted container for task {task_id!r}") from exc
        try:
            return await self._finish(task_id, container, deadline - time.time(), limit_s)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.to_thread(self._discard, container, True))
            raise

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        await self.warm.close()
        self._wait_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.client.close)

    # -- blocking helpers (run in threads) --------------------------------
    def _check_image(self, image: str) -> None:
        from docker.errors import ImageNotFound

        try:
            self.client.images.get(image)
        except ImageNotFound as exc:
            raise TaskSpecError(f"image {image!r} is not present on this host "
                                "(images are never pulled; build it with compose/build-images.sh)"
                                ) from exc

    def _create_and_start(self, spec: dict[str, Any]) -> Any:
        container = self.client.containers.create(**spec)
        try:
            container.start()
        except BaseException:
            self._discard(container)
            raise
        return container

    async def _finish(self, task_id: str, container: Any, timeout_s: float,
                      limit_s: float) -> TaskResult:
        """Wait up to ``timeout_s`` for the container, then hold it for ``forget``.

        Past the timeout the container is killed (the task failed: its wall limit
        ``limit_s`` passed). The container is never removed here.
        """
        import requests

        try:
            if timeout_s > 0:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._wait_pool,
                                           functools.partial(container.wait, timeout=timeout_s))
                result = await asyncio.to_thread(self._result, container)
            else:
                result = None  # adopted after its wall limit had already passed
        except requests.exceptions.RequestException:
            result = None  # the wait timed out
        except Exception as exc:  # noqa: BLE001 - any engine failure fails the task, not the agent
            log.warning("task %s: container %s failed to run: %s", task_id, container.short_id,
                        exc)
            await asyncio.to_thread(self._kill, container)
            self._held[task_id] = container
            return TaskResult(FAILED, reason=f"container error: {explain(exc)}")
        if result is None:
            await asyncio.to_thread(self._kill, container)
            result = timed_out(limit_s, await asyncio.to_thread(_log_tail, container))
        self._held[task_id] = container
        return result

    def _result(self, container: Any, limit_s: float | None = None) -> TaskResult:
        """The result of an exited container; ``limit_s`` recognises one killed at its
        wall limit by an earlier run of the agent (found at restart)."""
        container.reload()
        state = container.attrs.get("State", {})
        code = state.get("ExitCode")
        tail = _log_tail(container)
        if state.get("OOMKilled"):
            return exit_result(code, tail, oom=True)
        if limit_s is not None and code == KILLED_EXIT_CODE:
            started, finished = _started_at(container), _time(state.get("FinishedAt"))
            if started is not None and finished is not None and finished - started >= limit_s:
                return timed_out(limit_s, tail)
        return exit_result(code, tail)

    def _kill(self, container: Any) -> None:
        """SIGKILL a container and wait until it has stopped; it is kept (see ``forget``)."""
        from docker.errors import APIError, NotFound

        try:
            container.kill()
        except NotFound:
            return
        except APIError as exc:
            # 409: not running (it ended meanwhile); anything else is worth a line.
            if getattr(exc, "status_code", None) != 409:
                log.warning("could not kill container %s: %s", container.short_id, exc)
        try:
            container.wait(timeout=30)
        except Exception as exc:  # noqa: BLE001 - removal (force) will kill it in the end
            log.warning("container %s did not stop after SIGKILL: %s", container.short_id, exc)

    def _discard(self, container: Any, stop: bool = False) -> None:
        """Remove a container; ``stop`` first gives its process the stop grace period."""
        from docker.errors import APIError, NotFound

        if stop:
            try:
                container.stop(timeout=self.settings.stop_timeout_s)
            except (NotFound, APIError):
                pass
        try:
            container.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            # "removal already in progress" is fine; anything else is worth a line.
            if getattr(exc, "status_code", None) != 409:
                log.warning("could not remove container %s: %s", container.short_id, exc)


def _log_tail(container: Any) -> str:
    try:
        data = container.logs(stdout=True, stderr=True, tail=100)
    except Exception as exc:  # noqa: BLE001 - a missing log never changes the result
        log.debug("no logs for container %s: %s", container.short_id, exc)
        return ""
    return data[-LOG_TAIL_BYTES:].decode("utf-8", errors="replace")


def _started_at(container: Any) -> float | None:
    """When the container's process started (seconds since the epoch), from its inspect data."""
    return _time(container.attrs.get("State", {}).get("StartedAt"))


def _time(stamp: str | None) -> float | None:
    # The engine writes RFC 3339 with nanoseconds; "0001-01-01T00:00:00Z" means never.
    if not stamp or stamp.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        log.warning("unreadable container time %r", stamp)
        return None
