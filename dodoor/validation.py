"""Strict parsing of user-supplied tasks (API bodies, wire messages).

Every rejection is a :class:`ValidationError` naming the field and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np

from dodoor.errors import ValidationError
from dodoor.priority import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY
from dodoor.resources import Task

MAX_ID_LENGTH = 256
MAX_COMMAND_ITEMS = 1024
MAX_MAP_ITEMS = 256
MAX_STRING = 4096

_INF = math.inf
_EXACT_INT = 2**53  # ints up to here are exact as floats

TASK_FIELDS = frozenset(
    {"id", "cores", "memory_mb", "disk_mb", "duration_ms", "image", "command", "function",
     "env", "labels", "priority"}
)


def parse_task(obj: Any, make_id: Callable[[], str] | None = None, where: str = "") -> Task:
    """Validate a task mapping (API field names) and build a :class:`Task`.

    ``where`` prefixes field names (``tasks[3].cores``) for batch errors.
    """
    # This runs once per task on the scheduler's and the agent's hot paths, so the
    # common case is kept cheap: field names are joined to ``where`` only on error.
    if not isinstance(obj, Mapping):
        raise ValidationError(where or "task", f"must be an object, got {_kind(obj)}")
    if not TASK_FIELDS.issuperset(obj):
        unknown = sorted(str(k) for k in obj if k not in TASK_FIELDS)
        raise ValidationError(where + unknown[0], "unknown field")
    get = obj.get
    raw_id = get("id")
    if raw_id is not None:
        task_id = _task_id(raw_id, where)
    elif make_id is not None:
        task_id = make_id()
    else:
        raise ValidationError(where + "id", "is required")
    for required in ("cores", "memory_mb"):
        if required not in obj:
            raise ValidationError(where + required, "is required")
    image, command, function = get("image"), get("command"), get("function")
    env, labels = get("env"), get("labels")
    cores = _positive(obj["cores"], where, "cores")
    memory = _integer(obj["memory_mb"], where, "memory_mb", 1)
    disk = _integer(get("disk_mb", 0), where, "disk_mb", 0)
    duration = _positive(get("duration_ms", 1000.0), where, "duration_ms")
    priority = get("priority", DEFAULT_PRIORITY)
    if type(priority) is not int or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        priority = _priority(priority, where)
    return Task(
        task_id,
        cores,
        memory,
        disk,
        duration,
        image=None if image is None else _string(image, where, "image"),
        command=None if command is None else _command(command, where + "command"),
        function=None if function is None else _string(function, where, "function"),
        env={} if env is None else _string_map(env, where + "env"),
        labels={} if labels is None else _string_map(labels, where + "labels"),
        priority=priority,
    )


# the columns of a batch's demand matrix (dodoor.wire.EnqueueBatch), in order
DEMAND_COLUMNS = ("cores", "memory_mb", "disk_mb", "duration_ms")
RUN_FIELDS = frozenset({"image", "command", "function", "env", "labels"})


def parse_task_columns(ids: Any, demands: Any, priorities: Any = None, runs: Any = None,
                       where: str = "tasks") -> tuple[Task, ...]:
    """Validate a batch of tasks given as columns and build its :class:`Task` objects.

    ``ids``: a list of ids; ``demands``: raw little-endian float64, one row per id
    (:data:`DEMAND_COLUMNS`); ``priorities``: one class per id, or None (all default);
    ``runs``: what to run, ``{"<index>": {image, command, function, env, labels}}`` for
    the tasks that say, or None. The rules are :func:`parse_task`'s; a rejection names
    the first bad field as ``tasks[i].cores``.
    """
    if not isinstance(ids, list):
        raise ValidationError(where + ".ids", f"must be a list of ids, got {_kind(ids)}")
    n = len(ids)
    if not isinstance(demands, bytes) or len(demands) != 8 * len(DEMAND_COLUMNS) * n:
        raise ValidationError(where + ".demands", f"must be {n} rows of "
                              f"{len(DEMAND_COLUMNS)} float64, got {_kind(demands)}"
                              f" of {len(demands) if isinstance(demands, bytes) else '?'} bytes")
    for i, task_id in enumerate(ids):
        _task_id(task_id, where, i)
    table = np.frombuffer(demands, dtype="<f8").reshape(n, len(DEMAND_COLUMNS))
    _check_demands(table, where)
    if priorities is None:
        priorities = [DEFAULT_PRIORITY] * n
    elif not isinstance(priorities, list) or len(priorities) != n:
        raise ValidationError(where + ".priorities", f"must be a list of {n} classes")
    else:
        priorities = [p if type(p) is int and MIN_PRIORITY <= p <= MAX_PRIORITY
                      else _priority(p, f"{where}[{i}].") for i, p in enumerate(priorities)]
    tasks = [Task(task_id, cores, memory, disk, duration, 0.0, None, None, None, {}, {},
                  priority)
             for task_id, (cores, memory, disk, duration), priority
             in zip(ids, table.tolist(), priorities)]
    if runs is not None:
        _add_runs(tasks, runs, where)
    return tuple(tasks)


def _check_demands(table: np.ndarray, where: str) -> None:
    """:func:`parse_task`'s rules for the demands, on all rows at once; the first bad
    value is then checked again by the same scalar rule, which words the error."""
    cores, memory, disk, duration = table.T
    with np.errstate(invalid="ignore"):
        good = ((cores > 0.0) & (cores < _INF) & (duration > 0.0) & (duration < _INF)
                & (memory >= 1.0) & (memory < _INF) & (memory == np.floor(memory))
                & (disk >= 0.0) & (disk < _INF) & (disk == np.floor(disk)))
    if good.all():
        return
    i = int(np.argmin(good))
    at = f"{where}[{i}]."
    row = table[i].tolist()
    _positive(row[0], at, "cores")
    _checked_integer(row[1], at, "memory_mb", 1)
    _checked_integer(row[2], at, "disk_mb", 0)
    _positive(row[3], at, "duration_ms")
    # unreachable while the two forms of the rules agree (tests/core/test_enqueue_columns.py)
    raise ValidationError(at[:-1], f"demands out of range: {row!r}")


def _add_runs(tasks: list[Task], runs: Any, where: str) -> None:
    if not isinstance(runs, Mapping):
        raise ValidationError(where + ".runs", f"must be a map, got {_kind(runs)}")
    for key, run in runs.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()
                and int(key) < len(tasks)):
            raise ValidationError(where + ".runs", f"{key!r} is not the index of a task")
        i = int(key)
        at = f"{where}[{i}]."
        if not isinstance(run, Mapping):
            raise ValidationError(at[:-1], f"must be an object, got {_kind(run)}")
        if not RUN_FIELDS.issuperset(run):
            raise ValidationError(at + sorted(str(k) for k in run if k not in RUN_FIELDS)[0],
                                  "unknown field")
        task = tasks[i]
        tasks[i] = parse_task({**run, "id": task.task_id, "cores": task.cores,
                               "memory_mb": task.memory_mb, "disk_mb": task.disk_mb,
                               "duration_ms": task.duration_ms, "priority": task.priority},
                              where=at)


def task_columns(tasks: Sequence[Task]) -> dict[str, Any]:
    """The columns :func:`parse_task_columns` reads back (priorities and runs only when
    some task has them)."""
    out: dict[str, Any] = {
        "ids": [t.task_id for t in tasks],
        "demands": np.array([(t.cores, t.memory_mb, t.disk_mb, t.duration_ms) for t in tasks],
                            dtype="<f8").tobytes(),
    }
    if any(t.priority != DEFAULT_PRIORITY for t in tasks):
        out["priorities"] = [t.priority for t in tasks]
    runs = {}
    for i, t in enumerate(tasks):
        if t.image is not None or t.command is not None or t.function is not None \
                or t.env or t.labels:
            spec = t.to_dict()
            runs[str(i)] = {k: v for k, v in spec.items() if k in RUN_FIELDS}
    if runs:
        out["runs"] = runs
    return out


def _task_id(value: Any, where: str, index: int | None = None) -> str:
    """A task id: a non-blank ASCII string of at most MAX_ID_LENGTH; ``index`` puts it in
    a batch's column (``tasks[3].id``)."""
    if (type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and value.isascii()
            and "\x00" not in value and not value.isspace()):
        return value  # the usual case, checked without building the field name
    at = where if index is None else f"{where}[{index}]."
    task_id = _string(value, at, "id", MAX_ID_LENGTH)
    if not task_id.strip():
        raise ValidationError(at + "id", "must not be empty")
    return task_id


def _priority(value: Any, where: str) -> int:
    """A class of ``dodoor.priority``: a whole number in its range (null means the default)."""
    if value is None:
        return DEFAULT_PRIORITY
    number = _number(value, where, "priority")
    if not number.is_integer():
        raise ValidationError(where + "priority", f"must be a whole number, got {value!r}")
    if not MIN_PRIORITY <= number <= MAX_PRIORITY:
        raise ValidationError(where + "priority",
                              f"must be in {MIN_PRIORITY}..{MAX_PRIORITY}, got {value!r}")
    return int(number)


def _kind(value: Any) -> str:
    return type(value).__name__


def _number(value: Any, where: str, name: str) -> float:
    kind = type(value)
    if kind is float:
        number = value
    elif kind is int or (kind is not bool and isinstance(value, (int, float))):
        number = float(value)
    else:
        raise ValidationError(where + name, f"must be a number, got {_kind(value)}")
    if not math.isfinite(number):
        raise ValidationError(where + name, f"must be finite, got {value!r}")
    return number


def _positive(value: Any, where: str, name: str) -> float:
    # the usual types first, without building the field name (NaN fails the comparisons)
    kind = type(value)
    if kind is float and 0.0 < value < _INF:
        return value
    if kind is int and 0 < value <= _EXACT_INT:
        return float(value)
    return _checked_positive(value, where, name)


def _checked_positive(value: Any, where: str, name: str) -> float:
    number = _number(value, where, name)
    if number <= 0:
        raise ValidationError(where + name, f"must be > 0, got {value!r}")
    return number


def _integer(value: Any, where: str, name: str, minimum: int) -> float:
    if type(value) is int and minimum <= value <= _EXACT_INT:  # the usual case
        return float(value)
    return _checked_integer(value, where, name, minimum)


def _checked_integer(value: Any, where: str, name: str, minimum: int) -> float:
    number = _number(value, where, name)
    if not number.is_integer():
        raise ValidationError(where + name, f"must be a whole number, got {value!r}")
    if number < minimum:
        raise ValidationError(where + name, f"must be >= {minimum}, got {value!r}")
    return number


def _string(value: Any, where: str, name: str, limit: int = MAX_STRING) -> str:
    if type(value) is str and len(value) <= limit and value.isascii() and "\x00" not in value:
        return value  # the usual case, checked without building the field name
    field = where + name if where else name
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {_kind(value)}")
    if len(value) > limit:
        raise ValidationError(field, f"longer than {limit} characters")
    if "\x00" in value:
        raise ValidationError(field, "must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            # JSON can carry a lone surrogate (\ud800); msgpack and sqlite cannot
            raise ValidationError(field, f"is not valid UTF-8 text: {exc.reason} at "
                                  f"position {exc.start}") from exc
    return value


def _command(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValidationError(field, f"must be a list of strings, got {_kind(value)}")
    if not value:
        raise ValidationError(field, "must not be empty")
    if len(value) > MAX_COMMAND_ITEMS:
        raise ValidationError(field, f"more than {MAX_COMMAND_ITEMS} items")
    return tuple(_string(item, field, f"[{i}]") for i, item in enumerate(value))


def _string_map(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be an object of strings, got {_kind(value)}")
    if len(value) > MAX_MAP_ITEMS:
        raise ValidationError(field, f"more than {MAX_MAP_ITEMS} entries")
    return {_string(k, field, " key"): _string(v, field, f".{k}") for k, v in value.items()}
