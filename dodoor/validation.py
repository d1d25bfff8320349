"""Strict parsing of user-supplied tasks (API bodies, wire messages).

Every rejection is a :class:`ValidationError` naming the field and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable

from dodoor.errors import ValidationError
from dodoor.resources import Task

MAX_ID_LENGTH = 256
MAX_COMMAND_ITEMS = 1024
MAX_MAP_ITEMS = 256
MAX_STRING = 4096

TASK_FIELDS = frozenset(
    {"id", "cores", "memory_mb", "disk_mb", "duration_ms", "image", "command", "function",
     "env", "labels"}
)


def parse_task(obj: Any, make_id: Callable[[], str] | None = None, where: str = "") -> Task:
    """Validate a task mapping (API field names) and build a :class:`Task`.

    ``where`` prefixes field names (``tasks[3].cores``) for batch errors.
    """
    if not isinstance(obj, Mapping):
        raise ValidationError(where or "task", f"must be an object, got {_kind(obj)}")
    unknown = sorted(str(k) for k in obj if k not in TASK_FIELDS)
    if unknown:
        raise ValidationError(where + unknown[0], "unknown field")
    if "id" in obj and obj["id"] is not None:
        task_id = _string(obj["id"], where + "id", MAX_ID_LENGTH)
        if not task_id.strip():
            raise ValidationError(where + "id", "must not be empty")
    elif make_id is not None:
        task_id = make_id()
    else:
        raise ValidationError(where + "id", "is required")
    for required in ("cores", "memory_mb"):
        if required not in obj:
            raise ValidationError(where + required, "is required")
    command = obj.get("command")
    return Task(
        task_id=task_id,
        cores=_positive(obj["cores"], where + "cores"),
        memory_mb=_integer(obj["memory_mb"], where + "memory_mb", minimum=1),
        disk_mb=_integer(obj.get("disk_mb", 0), where + "disk_mb", minimum=0),
        duration_ms=_positive(obj.get("duration_ms", 1000.0), where + "duration_ms"),
        image=_optional_string(obj.get("image"), where + "image"),
        command=None if command is None else _command(command, where + "command"),
        function=_optional_string(obj.get("function"), where + "function"),
        env=_string_map(obj.get("env"), where + "env"),
        labels=_string_map(obj.get("labels"), where + "labels"),
    )


def _kind(value: Any) -> str:
    return type(value).__name__


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, f"must be a number, got {_kind(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ValidationError(field, f"must be finite, got {value!r}")
    return number


def _positive(value: Any, field: str) -> float:
    number = _number(value, field)
    if number <= 0:
        raise ValidationError(field, f"must be > 0, got {value!r}")
    return number


def _integer(value: Any, field: str, minimum: int) -> float:
    number = _number(value, field)
    if not number.is_integer():
        raise ValidationError(field, f"must be a whole number, got {value!r}")
    if number < minimum:
        raise ValidationError(field, f"must be >= {minimum}, got {value!r}")
    return number


def _string(value: Any, field: str, limit: int = MAX_STRING) -> str:
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


def _optional_string(value: Any, field: str) -> str | None:
    return None if value is None else _string(value, field)


def _command(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValidationError(field, f"must be a list of strings, got {_kind(value)}")
    if not value:
        raise ValidationError(field, "must not be empty")
    if len(value) > MAX_COMMAND_ITEMS:
        raise ValidationError(field, f"more than {MAX_COMMAND_ITEMS} items")
    return tuple(_string(item, f"{field}[{i}]") for i, item in enumerate(value))


def _string_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be an object of strings, got {_kind(value)}")
    if len(value) > MAX_MAP_ITEMS:
        raise ValidationError(field, f"more than {MAX_MAP_ITEMS} entries")
    return {_string(k, f"{field} key"): _string(v, f"{field}.{k}") for k, v in value.items()}
