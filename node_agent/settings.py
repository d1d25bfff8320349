"""Typed settings of one agent process, built once at the entry point."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from dodoor.service.auth_token import auth_headers
from dodoor.errors import ValidationError

EXECUTORS = ("sleep", "process", "docker")
# Finished results are forgotten a week after they end unless told otherwise: long
# enough for any client to read them back, short enough that the disk never fills.
DEFAULT_JOURNAL_RETENTION_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class AgentSettings:
    """Everything an agent needs; ``capacity`` is (cores, memory MiB, disk MiB)."""

    node_id: str = "node-0"
    host: str = "127.0.0.1"
    port: int = 8200
    loadstore_url: str | None = None
    advertise_url: str | None = None
    cores: float = 1.0
    memory_mb: float = 1024.0
    disk_mb: float = 0.0
    slots: int = 1
    executor: str = "sleep"
    journal_path: str = "dodoor-agent.sqlite"
    report_interval_ms: float = 100.0
    heartbeat_ms: float = 1000.0
    token: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    sleep_scale: float = 1.0
    task_timeout_ms: float | None = None
    confirm_timeout_ms: float = 5000.0
    journal_keep_finished: int = 0  # 0: keep every finished task's result
    journal_retention_s: float = DEFAULT_JOURNAL_RETENTION_S  # 0: keep results forever
    # Read by node_agent/docker_executor.py (DockerSettings.from_agent) when set.
    docker_network: str | None = None
    docker_allowed_images: tuple[str, ...] = ()
    docker_warm_images: tuple[str, ...] = ()
    docker_warm_per_image: int = 2
    docker_warm_idle_s: float = 60.0

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
