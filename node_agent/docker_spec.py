"""What a task becomes in the Docker engine: settings, image and command, limits, outcome.

Shared by the cold path (one container per task, ``node_agent/docker_executor.py``)
and the warm pool (``node_agent/warm_pool.py``), so both apply the same image
allow-list, the same limit floors, the same wall limit and read exit statuses the
same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from dodoor.taskstates import FAILED, SUCCEEDED
from dodoor.resources import Task
from node_agent.executor import TaskResult

BUSYBOX_IMAGE = "dodoor-task:busybox"
PYTHON_IMAGE = "dodoor-task:python"
TASK_LABEL = "dodoor.task_id"
AGENT_LABEL = "dodoor.agent_id"
WARM_LABEL = "dodoor.warm_image"  # on pool containers: the image they stay warm for
WARM_TASK_LABEL = "warm"  # a task label: "true" / "false" opts the task in or out of the pool
LOG_TAIL_BYTES = 4096
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KILLED_EXIT_CODE = 137  # 128 + SIGKILL: how the engine reports a killed container
# Floors for tiny tasks. The engine refuses a memory limit under 6 MiB. It takes a CPU
# quota down to 0.01 CPU, but the quota throttles the container's start too: measured
# here, `docker run --cpus 0.01 ... sleep 0` took 472 s, --cpus 0.1 0.64 s, --cpus 1
# 0.34 s. So quotas start at 0.1 CPU; a quota is a cap, the scheduler still counts the
# task's own demand.
MIN_MEMORY_MB = 6
MIN_CORES = 0.1
CPU_PERIOD_US = 100_000  # the CFS period NanoCpus stands for; warm updates set the quota in it
# Problem sizes for a named function given without arguments (about a second or less each).
FUNCTION_DEFAULTS: dict[str, tuple[str, ...]] = {
    "floatops": ("10000000",),
    "matmul": ("512",),
    "linsolve": ("1000",),
}


@dataclass(frozen=True)
class DockerSettings:
    """How the Docker executor runs containers; built once from the agent's settings.

    ``warm_images``: images whose tasks run in the warm pool unless a task opts
    out (label ``warm=false``); a task on any allowed image opts in with
    ``warm=true``. ``warm_per_image`` bounds the idle containers kept per image,
    ``warm_idle_s`` is how long one may stay idle before it is removed.
    """

    agent_id: str = "node-0"
    default_image: str = BUSYBOX_IMAGE
    function_image: str = PYTHON_IMAGE
    allowed_images: frozenset[str] = field(
        default_factory=lambda: frozenset({BUSYBOX_IMAGE, PYTHON_IMAGE}))
    network_mode: str = "none"
    sleep_scale: float = 1.0
    timeout_ms: float | None = None
    timeout_factor: float = 10.0
    min_timeout_ms: float = 60_000.0
    stop_timeout_s: int = 1
    pids_limit: int = 1024
    max_waits: int = 256
    warm_images: frozenset[str] = frozenset()
    warm_per_image: int = 2
    warm_idle_s: float = 60.0

    def __post_init__(self) -> None:
        if self.warm_per_image < 0:
            raise ValueError(f"warm_per_image must be >= 0, got {self.warm_per_image!r}")
        if not (self.warm_idle_s > 0 and math.isfinite(self.warm_idle_s)):
            raise ValueError(f"warm_idle_s must be a finite number > 0, got {self.warm_idle_s!r}")
        unknown = self.warm_images - self.allowed_images
        if unknown:
            raise ValueError(f"warm images {sorted(unknown)} are not on the allow-list "
                             f"{sorted(self.allowed_images)}")

    @classmethod
    def from_agent(cls, settings: Any) -> "DockerSettings":
        """From an agent's settings object: its ``node_id`` plus any ``docker_*`` fields it has."""
        kwargs: dict[str, Any] = {"agent_id": settings.node_id,
                                  "sleep_scale": getattr(settings, "sleep_scale", 1.0),
                                  "timeout_ms": getattr(settings, "task_timeout_ms", None)}
        images = getattr(settings, "docker_allowed_images", None)
        if images:
            kwargs["allowed_images"] = frozenset(images)
        network = getattr(settings, "docker_network", None)
        if network:
            kwargs["network_mode"] = network
        warm = getattr(settings, "docker_warm_images", None)
        if warm:
            kwargs["warm_images"] = frozenset(warm)
        for name in ("warm_per_image", "warm_idle_s"):
            value = getattr(settings, f"docker_{name}", None)
            if value is not None:
                kwargs[name] = value
        return cls(**kwargs)


class TaskSpecError(Exception):
    """The task cannot be turned into a container (bad image, unknown function)."""


def image_and_command(settings: DockerSettings, task: Task) -> tuple[str, list[str]]:
    """The image and command a task runs; raises :class:`TaskSpecError` when it cannot run."""
    if task.function is not None:
        if task.image is not None and task.image != settings.function_image:
            raise TaskSpecError(f"function {task.function!r} runs on "
                                f"{settings.function_image}, not {task.image!r}")
        if task.function not in FUNCTION_DEFAULTS:
            raise TaskSpecError(f"unknown function {task.function!r}; known: "
                                f"{', '.join(sorted(FUNCTION_DEFAULTS))}")
        args = task.command or FUNCTION_DEFAULTS[task.function]
        image, command = settings.function_image, [task.function, *args]
    else:
        image = task.image or settings.default_image
        if task.command:
            command = list(task.command)
        else:
            # A task with no command stands for its duration estimate (trace replay).
            seconds = task.duration_ms / 1000.0 * settings.sleep_scale
            command = ["dodoor-task", "sleep", f"{seconds:.3f}"]
    if image not in settings.allowed_images:
        raise TaskSpecError(f"image {image!r} is not allowed; allowed: "
                            f"{', '.join(sorted(settings.allowed_images))}")
    return image, command


def wants_warm(settings: DockerSettings, task: Task, image: str, command: list[str]) -> bool:
    """Whether the task runs in the warm pool: its label decides, else its image.

    The pool's runner reads a job as one shell line, so a task whose command or
    environment holds a newline, or whose environment has a name the shell
    cannot export, runs in its own container instead.
    """
    if settings.warm_per_image == 0:
        return False
    choice = str(task.labels.get(WARM_TASK_LABEL, "")).lower()
    if choice not in ("true", "false"):
        choice = "true" if image in settings.warm_images else "false"
    return choice == "true" and not any("\n" in part for part in (*command, *task.env.values())) \
        and all(_SHELL_NAME.fullmatch(name) for name in task.env)


def limits(task: Task, host_cpus: int | None) -> tuple[float, str]:
    """The CPU quota (cores) and memory limit a task's container gets.

    An agent may advertise a virtual capacity larger than its host; the engine
    refuses a CPU quota above the host's CPU count, so the quota is capped there
    (and raised to the floors above for very small tasks).
    """
    cores = task.cores if host_cpus is None else min(task.cores, float(host_cpus))
    return max(MIN_CORES, cores), f"{max(MIN_MEMORY_MB, int(math.ceil(task.memory_mb)))}m"


def task_env(task: Task) -> dict[str, str]:
    """The task's environment plus what every task is told about itself."""
    env = dict(task.env)
    env.update({"DODOOR_TASK_ID": task.task_id, "DODOOR_CORES": f"{task.cores:g}"})
    return env


def container_spec(settings: DockerSettings, task: Task, image: str, command: list[str],
                   host_cpus: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``containers.create`` of a task's own container."""
    cores, memory = limits(task, host_cpus)
    labels = {f"dodoor.label.{k}": str(v) for k, v in task.labels.items()}
    labels.update({TASK_LABEL: task.task_id, AGENT_LABEL: settings.agent_id})
    return {**confinement(settings), "image": image, "command": command, "labels": labels,
            "environment": task_env(task), "nano_cpus": int(round(cores * 1e9)),
            "mem_limit": memory, "memswap_limit": memory}


def confinement(settings: DockerSettings) -> dict[str, Any]:
    """What every container of this agent gets, task-owned or warm."""
    return {
        "pids_limit": settings.pids_limit,
        "network_mode": settings.network_mode,
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "detach": True,
    }


def wall_limit_s(settings: DockerSettings, task: Task) -> float:
    """A fixed ``timeout_ms``, else ``timeout_factor`` × the (scaled) estimate, floored."""
    if settings.timeout_ms is not None:
        return settings.timeout_ms / 1000.0
    limit_ms = max(settings.min_timeout_ms,
                   settings.timeout_factor * task.duration_ms * settings.sleep_scale)
    return limit_ms / 1000.0


def exit_result(code: int | None, tail: str, oom: bool = False) -> TaskResult:
    """The result of a process that ended with ``code`` (``oom``: the kernel killed it)."""
    if oom:
        return TaskResult(FAILED, exit_code=code, reason="OOM killed", log_tail=tail)
    if code == 0:
        return TaskResult(SUCCEEDED, exit_code=0, log_tail=tail)
    return TaskResult(FAILED, exit_code=code, reason=f"exit code {code}", log_tail=tail)


def timed_out(limit_s: float, tail: str) -> TaskResult:
    """The result of a task killed at its wall limit."""
    return TaskResult(FAILED, exit_code=KILLED_EXIT_CODE, reason=f"timed out after {limit_s:g} s",
                      log_tail=tail)


def explain(exc: Exception) -> str:
    """The engine's own explanation of an error, else the error's text."""
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
