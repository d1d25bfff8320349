"""The Docker runtime of the warm pool (``node_agent/warm_pool.py``): containers whose
main process is a tiny shell runner fed jobs on its stdin.

Each job is two lines on the container's stdin: a fresh job id, then the
command as one shell line (``export`` of the task's environment, then ``exec``
of the quoted command). The runner runs it in a subshell with stdin from
/dev/null, then kills every process left in the container but itself (``kill
-9 -1`` spares the caller and a namespace's init), and prints the job id and
exit status on a line of its own. The job's output and that line come back on
the attach stream; they also reach the container's log, where a restarted agent
finds the status of a job that ended while it was down.

Jobs are fed over one attach socket per container instead of ``docker exec``:
an exec costs an engine round trip and a ``runc exec`` per task (docs/docker.md
has the figures). A warm container cannot take ``NanoCpus`` updates, so its
CPU limit is the equivalent CFS quota over a 100 ms period.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
from typing import Any, Sequence

from docker.utils.socket import frames_iter

from node_agent.docker_spec import (AGENT_LABEL, CPU_PERIOD_US, WARM_LABEL, DockerSettings,
                                    confinement)
from node_agent.warm_pool import RunnerError

log = logging.getLogger(__name__)
RUNNER = ('while IFS= read -r n && IFS= read -r cmd; do ( eval "$cmd" ) </dev/null; st=$?; '
          "kill -9 -1 2>/dev/null; printf '\\n%s %d\\n' \"$n\" \"$st\"; done")
_MARK = re.compile(rb"\n([0-9a-f]+) (\d+)\n$")


class DockerWarmRuntime:
    """Warm containers on a Docker engine; ``client`` is a ``docker.DockerClient``."""

    def __init__(self, client: Any, settings: DockerSettings) -> None:
        self.client = client
        self.settings = settings
        # container id -> (its runner's attach socket, its image's entrypoint)
        self._runners: dict[str, tuple[Any, list[str]]] = {}
        self._lock = threading.Lock()

    def create(self, image: str, cores: float, memory: str) -> str:
        entry = self._entrypoint(image)
        container = self.client.containers.create(
            image, entrypoint=["sh", "-c", RUNNER], command=[], stdin_open=True,
            labels={AGENT_LABEL: self.settings.agent_id, WARM_LABEL: image},
            cpu_period=CPU_PERIOD_US, cpu_quota=_quota(cores), mem_limit=memory,
            memswap_limit=memory, **confinement(self.settings))
        try:
            sock = self.client.api.attach_socket(
                container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            # jobs run as long as their wall limit: no read timeout on the stream
            getattr(sock, "_sock", sock).settimeout(None)
            container.start()
        except BaseException:
            container.remove(force=True)
            raise
        with self._lock:
            self._runners[container.id] = (sock, entry)
        return container.id

    def update(self, container_id: str, cores: float, memory: str) -> None:
        self.client.api.update_container(container_id, cpu_quota=_quota(cores),
                                         mem_limit=memory, memswap_limit=memory)

    def run(self, container_id: str, job_id: str, command: Sequence[str], env: dict[str, str],
            output: bytearray) -> int:
        try:
            sock, entry = self._runners[container_id]
        except KeyError as exc:
            raise RunnerError(f"no runner stream for container {container_id[:12]}") from exc
        # docker_spec.wants_warm let in only names and values that fit on one line
        line = "".join(f"export {k}={shlex.quote(v)}; " for k, v in env.items())
        line += "exec " + shlex.join([*entry, *command])
        mark = f"\n{job_id} ".encode()
        try:
            getattr(sock, "_sock", sock).sendall(f"{job_id}\n{line}\n".encode())
            start = len(output)
            for _, data in frames_iter(sock, tty=False):
                output += data
                found = _MARK.search(output, max(start, len(output) - len(data) - 64))
                if found and output.rfind(mark) == found.start():
                    code = int(found.group(2))
                    del output[found.start():]
                    return code
        except OSError as exc:
            raise RunnerError(f"the runner's stream broke: {exc}") from exc
        raise RunnerError(f"the runner of container {container_id[:12]} ended")

    def kill(self, container_id: str) -> None:
        from docker.errors import APIError, NotFound

        try:
            self.client.api.kill(container_id)
        except (NotFound, APIError) as exc:
            log.debug("kill of warm container %s: %s", container_id[:12], exc)

    def remove(self, container_id: str) -> None:
        from docker.errors import APIError, NotFound

        with self._lock:
            sock, _ = self._runners.pop(container_id, (None, None))
        try:
            self.client.api.remove_container(container_id, force=True)
        except NotFound:
            pass
        except APIError as exc:
            if getattr(exc, "status_code", None) != 409:  # removal already in progress
                log.warning("could not remove warm container %s: %s", container_id[:12], exc)
        if sock is not None:
            sock.close()

    def listed(self) -> list[tuple[str, bool]]:
        found = self.client.containers.list(
            all=True, sparse=True, filters={"label": [f"{AGENT_LABEL}={self.settings.agent_id}",
                                                      WARM_LABEL]})
        return [(c.id, c.attrs.get("State") == "running") for c in found]

    def finished_job(self, container_id: str, job_id: str) -> tuple[int, str] | None:
        from docker.errors import NotFound

        try:
            log_text = self.client.api.logs(container_id, stdout=True, stderr=True)
        except NotFound:
            return None
        found = re.search(rb"\n" + re.escape(job_id.encode()) + rb" (\d+)\n", log_text)
        if found is None:
            return None
        return int(found.group(1)), ""

    # -- internals ----------------------------------------------------------
    def _entrypoint(self, image: str) -> list[str]:
        """The image's own entrypoint, run before each job's command (the runner replaced it)."""
        config = self.client.images.get(image).attrs.get("Config") or {}
        return list(config.get("Entrypoint") or [])


def _quota(cores: float) -> int:
    return max(1000, int(round(cores * CPU_PERIOD_US)))
