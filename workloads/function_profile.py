"""``dodoor profile``: measure each function class's duration and peak memory here.

Each class is run ``repeat`` times in the ``dodoor-task:python`` image through
the docker SDK when docker and the image are available (what the docker
executor will run), else as a local process running the packaged copy of the
image's script (:mod:`workloads.task_functions`). A small
wrapper prints the process's peak RSS (``ru_maxrss``); the duration is the
wall time seen from outside (container or interpreter start included, as a
task's duration on an agent is), the median over the runs.
"""

from __future__ import annotations

import json
import logging
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

from dodoor.errors import DodoorError

log = logging.getLogger(__name__)

PYTHON_IMAGE = "dodoor-task:python"
IMAGE_SCRIPT = "/opt/task/functions.py"
# The calls of each class: quick vector ops, a mid-size matrix product, a dense solve.
DEFAULT_CALLS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "short": ("floatops", ("1000000",)),
    "medium": ("matmul", ("2048",)),
    "long": ("linsolve", ("4000",)),
}
_WRAPPER = (
    "import json, resource, runpy, sys\n"
    "path = sys.argv[1]\n"
    "sys.argv = [path] + sys.argv[2:]\n"
    "code = 0\n"
    "try:\n"
    "    runpy.run_path(path, run_name='__main__')\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "print(json.dumps({'maxrss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))\n"
    "sys.exit(code)\n"  # a function that failed is not a measurement
)
Runner = Callable[[str, tuple[str, ...]], tuple[float, float]]


def local_script() -> Path:
    """The functions the image runs, as packaged with dodoor (workloads/task_functions.py)."""
    return Path(__file__).resolve().with_name("task_functions.py")


def _peak_mb(output: str) -> float:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{") and "maxrss_kb" in line:
            return json.loads(line)["maxrss_kb"] / 1024.0
    raise DodoorError(f"no peak memory line in the function's output: {output[-300:]!r}")


def run_local(function: str, args: tuple[str, ...]) -> tuple[float, float]:
    """(wall ms, peak MiB) of one local run."""
    script = local_script()
    if not script.is_file():
        raise DodoorError(f"the task functions script {script} is missing from this install")
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", _WRAPPER, str(script), function, *args],
                              capture_output=True, text=True, check=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise DodoorError(f"{function} {' '.join(args)} exited with code {exc.returncode}: "
                          f"{last[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DodoorError(f"{function} {' '.join(args)} ran over {exc.timeout:g} s") from exc
    return (time.perf_counter() - started) * 1000.0, _peak_mb(done.stdout)


def docker_runner() -> Runner | None:
    """A runner using the python task image, or None when docker or the image is missing."""
    try:
        import docker

        client = docker.from_env()
        client.images.get(PYTHON_IMAGE)
    except Exception as exc:  # the SDK raises many types; any of them means "no docker"
        log.info("profiling locally: docker unavailable (%s)", exc)
        return None

    def run(function: str, args: tuple[str, ...]) -> tuple[float, float]:
        started = time.perf_counter()
        out = client.containers.run(PYTHON_IMAGE, [IMAGE_SCRIPT, function, *args],
                                    entrypoint=["python", "-c", _WRAPPER], remove=True,
                                    network_disabled=True, stdout=True, stderr=False)
        return (time.perf_counter() - started) * 1000.0, _peak_mb(out.decode())

    return run


def profile(runner: Runner, where: str, repeat: int = 3,
            calls: Mapping[str, tuple[str, tuple[str, ...]]] = DEFAULT_CALLS) -> dict:
    """The profile document: per class its call, median duration and peak memory."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    classes = {}
    for name, (function, args) in calls.items():
        runs = [runner(function, args) for _ in range(repeat)]
        classes[name] = {
            "function": function, "args": list(args),
            "duration_ms": round(statistics.median(r[0] for r in runs), 1),
            "memory_mb": round(max(r[1] for r in runs), 1),
            "runs_ms": [round(r[0], 1) for r in runs],
        }
        log.info("%s: %s %s -> %.0f ms, %.0f MiB", name, function, " ".join(args),
                 classes[name]["duration_ms"], classes[name]["memory_mb"])
    return {"where": where, "host": platform.node(), "machine": platform.machine(),
            "repeat": repeat, "classes": classes}


def run_profile(out: str | Path, repeat: int = 3, local: bool = False) -> Path:
    """Measure and write the profile JSON to ``out``."""
    runner = None if local else docker_runner()
    doc = (profile(runner, "docker:" + PYTHON_IMAGE, repeat) if runner is not None
           else profile(run_local, "local", repeat))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path
