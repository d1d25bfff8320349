"""Typed settings of one agent process, built once at the entry point.

The fields made with :func:`~dodoor.service.cliargs.setting` are the flags of
``dodoor agent`` (node_agent/command.py derives them).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from dodoor.service.auth_token import auth_headers
from dodoor.errors import ValidationError
from dodoor.service.cliargs import MAX_PORT, bounded, setting

EXECUTORS = ("sleep", "process", "docker")
RETENTION_ENV = "DODOOR_JOURNAL_RETENTION_S"
# Finished results are forgotten a week after they end unless told otherwise: long
# enough for any client to read them back, short enough that the disk never fills.
DEFAULT_JOURNAL_RETENTION_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class AgentSettings:
    """Everything an agent needs; ``capacity`` is (cores, memory MiB, disk MiB)."""

    node_id: str = setting("node-0", "this node's id, unique in the cluster", flag="--id")
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8200, "port to listen on", type=bounded(int, 1, MAX_PORT))
    loadstore_url: str | None = setting(None, "load store base URL", flag="--loadstore",
                                        required=True, metavar="URL")
    advertise_url: str | None = setting(
        None, "URL schedulers use to reach this agent (default http://HOST:PORT)")
    # None on the command line: measured on this host (node_agent/command.py)
    cores: float = setting(1.0, "default: the host's CPU count", cli_default=None)
    memory_mb: float = setting(1024.0, "default: the host's total memory", cli_default=None)
    disk_mb: float = setting(0.0, "default: free space on the journal's filesystem",
                             cli_default=None)
    slots: int = setting(1, "concurrent tasks (default: cores)", cli_default=None,
                         type=bounded(int, 1))
    executor: str = setting(
        "sleep", "sleep: hold the task's resources for its duration; process: run its "
                 "command here; docker: run it in a container", choices=EXECUTORS)
    journal_path: str = setting("dodoor-agent.sqlite",
                                "sqlite journal (default ./dodoor-agent-ID.sqlite)",
                                flag="--journal", cli_default=None, metavar="PATH")
    report_interval_ms: float = setting(
        100.0, "least time between two load reports to the load store")
    heartbeat_ms: float = setting(1000.0, "a report at least this often, even with nothing new")
    token: str | None = None
    max_body_bytes: int = setting(4 * 1024 * 1024, "largest request body accepted (413 above)",
                                  type=bounded(int, 1))
    sleep_scale: float = setting(
        1.0, "sleep executor: multiply every duration (replay traces faster)")
    task_timeout_ms: float | None = setting(
        None, "process executor: wall limit (default max(60 s, 10 × duration))")
    confirm_timeout_ms: float = 5000.0
    preempt: bool = setting(
        False, "stop lower-class running tasks when a higher-class task cannot start "
               "otherwise; they wait again and later re-run from the start (default off; "
               "docs/agent.md)")
    journal_keep_finished: int = setting(  # 0: keep every finished task's result
        0, "keep only the newest N finished results in the journal (default 0: all)",
        type=bounded(int, 0), metavar="N")
    journal_retention_s: float = setting(  # 0: keep results forever
        DEFAULT_JOURNAL_RETENTION_S,
        f"forget finished results S seconds after they end (0: never; default "
        f"${RETENTION_ENV} or {DEFAULT_JOURNAL_RETENTION_S:g}, 7 days)",
        cli_default=None, metavar="S")
    # Read by node_agent/docker_executor.py (DockerSettings.from_agent) when set.
    docker_network: str | None = setting(
        None, "docker executor: network for task containers (default none)")
    docker_allowed_images: tuple[str, ...] = setting(
        (), "docker executor: an image tasks may use (repeatable; default the built task "
            "images)", flag="--docker-allow-image", cli_default=[], action="append",
        metavar="IMAGE", convert=tuple)
    docker_warm_images: tuple[str, ...] = setting(
        (), "docker executor: keep warm containers for this image's tasks (repeatable; a task "
            "label warm=true/false opts in or out; default none); docs/docker.md",
        flag="--docker-warm-image", cli_default=[], action="append", metavar="IMAGE",
        convert=tuple)
    docker_warm_per_image: int = setting(
        2, "docker executor: idle warm containers kept per image (default 2)",
        type=bounded(int, 0))
    docker_warm_idle_s: float = setting(
        60.0, "docker executor: a warm container idle this long is removed (default 60)")

    def __post_init__(self) -> None:
        for name in ("cores", "memory_mb"):
            value = getattr(self, name)
            if not (value > 0 and np.isfinite(value)):
                raise ValidationError(name, f"must be a finite number > 0, got {value!r}")
        if not (self.disk_mb >= 0 and np.isfinite(self.disk_mb)):
            raise ValidationError("disk_mb", f"must be a finite number >= 0, got {self.disk_mb!r}")
        if self.slots < 1:
            raise ValidationError("slots", f"must be >= 1, got {self.slots!r}")
        if self.executor not in EXECUTORS:
            raise ValidationError("executor", f"must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if not self.report_interval_ms > 0:
            raise ValidationError("report_interval_ms", f"must be > 0, got {self.report_interval_ms!r}")
        if not self.heartbeat_ms > 0:
            raise ValidationError("heartbeat_ms", f"must be > 0, got {self.heartbeat_ms!r}")
        if self.journal_keep_finished < 0:
            raise ValidationError("journal_keep_finished",
                                  f"must be >= 0, got {self.journal_keep_finished!r}")
        if not (self.journal_retention_s >= 0 and np.isfinite(self.journal_retention_s)):
            raise ValidationError("journal_retention_s", "must be a finite number of seconds >= 0"
                                  f" (0: keep forever), got {self.journal_retention_s!r}")
        if self.docker_warm_per_image < 0:
            raise ValidationError("docker_warm_per_image",
                                  f"must be >= 0, got {self.docker_warm_per_image!r}")
        if not (self.docker_warm_idle_s > 0 and np.isfinite(self.docker_warm_idle_s)):
            raise ValidationError("docker_warm_idle_s",
                                  f"must be a finite number > 0, got {self.docker_warm_idle_s!r}")
        if self.max_body_bytes < 1024:
            raise ValidationError("max_body_bytes", f"must be >= 1024, got {self.max_body_bytes!r}")

    @property
    def capacity(self) -> np.ndarray:
        return np.array([self.cores, self.memory_mb, self.disk_mb], dtype=np.float64)

    @property
    def url(self) -> str:
        """Where schedulers reach this agent."""
        return self.advertise_url or f"http://{self.host}:{self.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return auth_headers(self.token)


@dataclass(frozen=True, slots=True)
class HostCapacity:
    cores: float
    memory_mb: float
    disk_mb: float
    slots: int


def host_capacity(journal_path: str) -> HostCapacity:
    """This host's capacity: CPUs, total memory, free disk where the journal lives."""
    cores = float(psutil.cpu_count(logical=True) or os.cpu_count() or 1)
    memory_mb = float(psutil.virtual_memory().total // (1024 * 1024))
    where = Path(journal_path).resolve().parent
    while not where.exists() and where != where.parent:
        where = where.parent
    disk_mb = float(shutil.disk_usage(where).free // (1024 * 1024))
    return HostCapacity(cores, memory_mb, disk_mb, max(1, int(cores)))
