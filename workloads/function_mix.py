"""Serverless function workload: trace tasks mapped onto the ``dodoor-task:python`` functions.

A *profile* (JSON, written by ``dodoor profile``; a default ships as
``workloads/data/function_profile.json``) names one function call per class —
``short``, ``medium``, ``long`` — with its measured duration and peak memory.
The mix keeps each trace task's arrival and id and replaces what it runs and
its demands by a class drawn with the mix's weights (60/30/10 by default).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from dodoor.errors import ValidationError
from dodoor.settings import key_values
from dodoor.resources import Task

CLASSES = ("short", "medium", "long")
DEFAULT_MIX: Mapping[str, float] = {"short": 0.6, "medium": 0.3, "long": 0.1}
# Peak memory is measured once; a task's demand gets headroom over it so a
# slightly larger run on another host is not over its reservation.
MEMORY_HEADROOM = 1.25


@dataclass(frozen=True)
class FunctionClass:
    """One function call of the mix and its profiled demands."""

    name: str
    function: str
    args: tuple[str, ...]
    duration_ms: float
    memory_mb: float
    cores: float = 1.0


def default_profile_path() -> Path:
    return Path(__file__).with_name("data") / "function_profile.json"


def load_profile(path: str | Path | None = None) -> dict[str, FunctionClass]:
    """The classes of a profile file (default: the bundled one)."""
    path = Path(path) if path is not None else default_profile_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationError("profile", f"cannot read profile {path}: {exc}") from exc
    out: dict[str, FunctionClass] = {}
    for name, entry in data.get("classes", {}).items():
        try:
            out[name] = FunctionClass(name, str(entry["function"]),
                                      tuple(str(a) for a in entry["args"]),
                                      float(entry["duration_ms"]), float(entry["memory_mb"]),
                                      float(entry.get("cores", 1.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError("profile", f"{path}: class {name!r} is malformed: {exc}") from exc
    if not out:
        raise ValidationError("profile", f"{path} defines no classes")
    return out


def parse_mix(text: str | None) -> dict[str, float]:
    """``short=0.6,medium=0.3,long=0.1`` (weights normalised); None → the default."""
    if not text:
        return dict(DEFAULT_MIX)
    mix: dict[str, float] = {}
    for part in text.split(","):
        ((name, value),) = key_values([part], "function_mix", "CLASS=WEIGHT").items()
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not (weight >= 0):
            raise ValidationError("function_mix", f"expected CLASS=WEIGHT, got {part!r}")
        mix[name] = weight
    total = sum(mix.values())
    if total <= 0:
        raise ValidationError("function_mix", f"weights must sum to > 0, got {text!r}")
    return {k: v / total for k, v in mix.items()}


def apply_function_mix(tasks: Sequence[Task], profile: Mapping[str, FunctionClass],
                       mix: Mapping[str, float] | None = None, seed: int = 0) -> list[Task]:
    """Each task becomes a call of a class drawn by ``mix`` (seeded), keeping id and arrival."""
    mix = dict(mix or DEFAULT_MIX)
    unknown = [name for name in mix if name not in profile]
    if unknown:
        raise ValidationError("function_mix", f"classes {unknown} are not in the profile "
                              f"(it has {sorted(profile)})")
    names = [n for n in mix if mix[n] > 0]
    weights = [mix[n] for n in names]
    rng = random.Random(seed)
    out = []
    for task in tasks:
        cls = profile[rng.choices(names, weights)[0]]
        out.append(dataclasses.replace(
            task, cores=cls.cores, memory_mb=math.ceil(cls.memory_mb * MEMORY_HEADROOM),
            disk_mb=0.0, duration_ms=cls.duration_ms, image=None, command=cls.args,
            function=cls.function, labels={**task.labels, "function_class": cls.name},
        ))
    return out
