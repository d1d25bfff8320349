"""Parsing a ``POST /v1/tasks`` body: one task or ``{"tasks": [...]}``, JSON or msgpack."""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Mapping

import msgpack

from dodoor.errors import ValidationError
from dodoor.resources import Task
from dodoor.validation import parse_task

MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack"})
JSON_TYPES = frozenset({"application/json", "text/json", ""})


class BodyError(ValidationError):
    """The body as a whole is unusable (malformed, wrong media type)."""

    def __init__(self, status: int, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.status = status


def new_task_id() -> str:
    return uuid.uuid4().hex


def decode_body(body: bytes, content_type: str) -> Any:
    """The body as plain data, by media type; raises :class:`BodyError`."""
    if content_type in MSGPACK_TYPES:
        try:
            return msgpack.unpackb(body, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises many unrelated exception types
            raise BodyError(400, "body", f"malformed msgpack: {exc}") from exc
    if content_type in JSON_TYPES:
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BodyError(400, "body", f"malformed JSON: {exc}") from exc
    raise BodyError(415, "content-type",
                    f"unsupported media type {content_type!r}; use application/json "
                    "or application/msgpack")


def parse_submission(body: bytes, content_type: str, max_batch: int,
                     made: set[str] | None = None) -> tuple[list[Task], bool]:
    """The tasks of a submission and whether it was a batch.

    Ids are generated (uuid4) where absent; ``made`` (when given) receives them, since
    an id made here cannot collide with another scheduler's (scheduler.placer places
    those without waiting for the claim first). Raises :class:`ValidationError` naming
    the field (``tasks[2].cores``) or :class:`BodyError`.
    """
    obj = decode_body(body, content_type)
    make_id = new_task_id if made is None else _recording(made)
    if isinstance(obj, Mapping) and "tasks" in obj:
        return _parse_batch(obj, max_batch, make_id), True
    return [parse_task(obj, make_id=make_id)], False


def _recording(made: set[str]) -> Callable[[], str]:
    def make_id() -> str:
        task_id = new_task_id()
        made.add(task_id)
        return task_id
    return make_id


def _parse_batch(obj: Mapping, max_batch: int, make_id: Callable[[], str]) -> list[Task]:
    extra = sorted(str(k) for k in obj if k != "tasks")
    if extra:
        raise ValidationError(extra[0], "unknown field")
    items = obj["tasks"]
    if not isinstance(items, list):
        raise ValidationError("tasks", f"must be a list, got {type(items).__name__}")
    if not items:
        raise ValidationError("tasks", "must not be empty")
    if len(items) > max_batch:
        raise ValidationError("tasks", f"at most {max_batch} tasks per request, got {len(items)}")
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        try:
            task = parse_task(item, make_id=make_id)
        except ValidationError:
            # parsing is deterministic: again with the field prefix for the error
            # (not built for every task that passes)
            parse_task(item, make_id=new_task_id, where=f"tasks[{i}].")
            raise
        first = seen.setdefault(task.task_id, i)
        if first != i:
            raise ValidationError(
                f"tasks[{i}].id", f"duplicate id {task.task_id!r} (also tasks[{first}].id)"
            )
        tasks.append(task)
    return tasks
