"""Wire messages between components, and the one encode/decode seam.

Every message is a frozen dataclass registered under a type name. On the wire
it is a msgpack map ``{"v": SCHEMA_VERSION, "type": name, "body": {...}}``
sent as ``Content-Type: application/msgpack``. Numeric vectors and matrices
travel as raw little-endian float64 (``[shape, bytes]``), never pickles. Any
failure to decode — bad msgpack, wrong version, unknown type, missing or
mistyped field — raises :class:`~dodoor.errors.DecodeError`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import msgpack
import numpy as np

from dodoor.errors import DecodeError, ValidationError
from dodoor.resources import Task
from dodoor.validation import parse_task

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/msgpack"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_REGISTRY: dict[str, type] = {}
# Per message class, its field names, read once: every report and status answer encodes
# a message per task, and dataclasses.fields() per object was a third of an agent's CPU.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
# Per message class, its fields left out of the body at their default (omitted_at_default)
_OMITTED: dict[type, tuple[tuple[str, Any], ...]] = {}
OMIT_DEFAULT = "dodoor.wire.omit_default"
# values that travel as they are; checked by exact type first, the common case
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})


def message(name: str):
    """Class decorator: a frozen dataclass message registered as ``name``."""

    def wrap(cls: type) -> type:
        cls = dataclass(frozen=True)(cls)
        cls.TYPE = name
        _REGISTRY[name] = cls
        _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
        omit = tuple((f.name, f.default) for f in dataclasses.fields(cls)
                     if f.metadata.get(OMIT_DEFAULT))
        if omit:
            _OMITTED[cls] = omit
        return cls

    return wrap


def omitted_at_default(default: Any) -> Any:
    """A field left out of the encoded body while it holds ``default`` (decoding gives the
    default back): a field added later costs its messages nothing until it is used, and
    a peer that predates it still reads them."""
    return field(default=default, metadata={OMIT_DEFAULT: True})


@message("enqueue")
class Enqueue:
    """Scheduler → agent: run this task (also the task sent to a confirming Sparrow node)."""

    task: Task
    scheduler_id: str
    # the node life the scheduler aims at (Snapshot.incarnations): an agent refuses an
    # enqueue meant for a life it was fenced out of (docs/guarantees.md)
    incarnation: str = ""
    # set only when another agent hands the task over (rebalancing): it keeps its first
    # placement time, and an agent that had handed the id over before takes it back
    queued_ms: float | None = omitted_at_default(None)
    # the scheduler's learned duration of the task (scheduler/learning.py), when it is not
    # the declared one: the pending work the agent counts; the task runs as it is
    estimate_ms: float | None = omitted_at_default(None)
    TYPE: ClassVar[str]

    def __post_init__(self) -> None:
        if self.estimate_ms is not None:
            _check_estimate(self.estimate_ms)


@message("enqueue_batch")
class EnqueueBatch:
    """Scheduler → agent: several tasks in one request (``POST /internal/enqueue_batch``).

    Counted as one ``enqueue`` per task, like the single enqueues it replaces.
    """

    tasks: tuple[Task, ...]
    scheduler_id: str
    incarnation: str = ""  # as in Enqueue
    # Enqueue.estimate_ms per task, in order, or none at all (every task counts as declared)
    estimates_ms: tuple[float, ...] = omitted_at_default(())
    TYPE: ClassVar[str]

    def __post_init__(self) -> None:
        if self.estimates_ms and len(self.estimates_ms) != len(self.tasks):
            raise ValueError(f"{len(self.estimates_ms)} estimates for {len(self.tasks)} tasks")
        for estimate in self.estimates_ms:
            _check_estimate(estimate)


def _check_estimate(estimate_ms: float) -> None:
    if not (math.isfinite(estimate_ms) and estimate_ms > 0.0):
        raise ValueError(f"a duration estimate must be a finite number of ms > 0, "
                         f"got {estimate_ms!r}")


@message("probe")
class Probe:
    """Scheduler → agent: report your current load (power-of-two, Prequal).

    ``movable_below`` > 0 also asks for the agent's queued, never started tasks of a
    class below it (the packing fallback's movable tasks, docs/daemons.md)."""

    scheduler_id: str
    movable_below: int = omitted_at_default(0)
    TYPE: ClassVar[str]


@message("probe_reply")
class ProbeReply:
    """Agent → scheduler: committed cores/memory/disk, task count, pending ms.

    Asked with ``movable_below``: the queued tasks of a lower class, read at the same
    moment as ``state``: their ids and a row each of cores, memory, disk and class."""

    node_id: str
    state: np.ndarray
    movable_ids: tuple[str, ...] = omitted_at_default(())
    movable: np.ndarray | None = omitted_at_default(None)
    TYPE: ClassVar[str]


@message("reserve")
class Reserve:
    """Scheduler → agent: hold a place in the queue for this task (Sparrow)."""

    task: Task
    scheduler_id: str
    reply_url: str
    TYPE: ClassVar[str]


@message("confirm")
class Confirm:
    """Agent → scheduler: the reservation reached the head and fits; send the task.

    ``task`` is the reserved task from the agent's journal: a scheduler that lost its
    reservation book (restarted) can still decide, through the load store's claims.
    """

    node_id: str
    task_id: str
    task: Task | None = None
    TYPE: ClassVar[str]


@message("cancel")
class Cancel:
    """Scheduler → agent: drop the reservation (another node won)."""

    task_id: str
    TYPE: ClassVar[str]


@message("cancel_task")
class CancelTask:
    """Scheduler → agent (``POST /internal/cancel_task``): a client cancels this task.
    A queued one never starts; a running one is stopped. Answered with the task's
    :class:`TaskStatus` afterwards (``cancelled``, or the terminal state it had already)."""

    task_id: str
    reason: str = ""
    TYPE: ClassVar[str]


@message("move")
class MoveOrder:
    """Load store (or a scheduler) → agent (``POST /internal/move``): hand a queued task
    over to the agent ``target_node`` (rebalancing, docs/guarantees.md "Moved tasks").

    The agent moves ``task_id`` when given, else its first queued task that fits
    ``room`` (cores, memory, disk; empty: any); only a task that never started moves.
    ``target_incarnation`` is the target's life the order aims at (it refuses another).
    Counted as a ``cancel``: the order costs what the simulator's move order costs.
    """

    target_node: str
    target_url: str
    target_incarnation: str = ""
    room: tuple[float, ...] = ()
    task_id: str = ""
    TYPE: ClassVar[str]


@message("deltas")
class Deltas:
    """Scheduler → load store: own placements since the last batch, per node."""

    scheduler_id: str
    seq: int
    node_ids: tuple[str, ...]
    deltas: np.ndarray
    placements: int
    TYPE: ClassVar[str]


@message("snapshot")
class Snapshot:
    """Load store → scheduler: every live node's capacity and state."""

    seq: int
    node_ids: tuple[str, ...]
    urls: tuple[str, ...]
    capacity: np.ndarray
    slots: np.ndarray
    state: np.ndarray
    epoch: str = ""  # the store instance; set when it also sends SnapshotDelta
    dead: tuple[str, ...] = ()  # nodes the store declared dead: their tasks are ``lost``
    incarnations: tuple[str, ...] = ()  # each node's current life, as node_ids
    TYPE: ClassVar[str]


@message("snapshot_delta")
class SnapshotDelta:
    """Load store → scheduler: only the rows changed since the scheduler's last snapshot.

    ``base_seq`` is the seq of the snapshot this one extends, ``epoch`` the
    store instance's; a scheduler holding another base or epoch answers 409
    and gets a full :class:`Snapshot` (``dodoor.snapshots``). Counted as a
    ``snapshot`` message.
    """

    seq: int
    base_seq: int
    epoch: str
    node_ids: tuple[str, ...]
    state: np.ndarray
    dead: tuple[str, ...] = ()  # as in Snapshot (the whole set, not a change)
    TYPE: ClassVar[str]


@message("node_state")
class NodeState:
    """Agent → load store: full state, sent on change, coalesced.

    ``heartbeat`` marks a report sent only because nothing changed for a while
    (liveness); it is counted as ``heartbeat``, not as a scheduling message.
    """

    node_id: str
    url: str
    seq: int
    capacity: np.ndarray
    slots: int
    state: np.ndarray
    utilization: Mapping[str, float] = field(default_factory=dict)
    heartbeat: bool = False
    # the agent's life on its journal: a new one after the store fenced the old
    incarnation: str = ""
    # ids accepted since the last acknowledged report (all journaled ids after the
    # agent starts or the store restarts): the store's task index (docs/guarantees.md)
    task_ids: tuple[str, ...] = ()
    # this report ends a resend of every journaled id: the store's index now holds them all
    task_ids_complete: bool = False
    # per id of ``task_ids``: "" when accepted, its terminal state when it ended since
    # the last answered report (empty from older agents: all accepted). The store's
    # index then answers a dead node's finished ids with their state (docs/guarantees.md)
    task_states: tuple[str, ...] = ()
    TYPE: ClassVar[str]


@message("register")
class Register:
    """Scheduler → load store: push snapshots to ``url``.

    ``wants_load`` is False for a scheduler whose policy never scores from the
    cache (probing, random): it needs the node list, not the nodes' load.
    """

    role: str
    component_id: str
    url: str
    wants_load: bool = True
    TYPE: ClassVar[str]


@message("report_ack")
class ReportAck:
    """Load store → agent, the answer to a ``node_state``: are state reports wanted?

    When no registered scheduler scores from node load, a report per change
    would be pure overhead (docs/design.md §4 counts none for the probing policies), so
    the agent then sends only its heartbeat, which keeps membership and liveness.
    """

    wants_load: bool
    # this incarnation was declared dead: end its unfinished tasks ``lost``, start anew
    fenced: bool = False
    # how long this answer lets the agent start tasks without another one (the store's
    # dead-after: past it the store may declare the node dead)
    lease_ms: float = 0.0
    instance: str = ""  # the store's process; a new one has an empty task index
    # with ``fenced``: the ended ids of the report whose end the store's index holds for
    # this node (answered with their state); the agent keeps them, the rest ends ``lost``
    kept: tuple[str, ...] = ()
    TYPE: ClassVar[str]


@message("lookup")
class Lookup:
    """Scheduler → load store: where are these tasks? With ``claim``, also reserve the
    ids not yet placed anywhere for this scheduler (one id, one placement cluster-wide).

    ``scheduler_id`` names the scheduler process (id and instance), so a restarted
    scheduler does not take its previous life's claims for its own.
    """

    scheduler_id: str
    task_ids: tuple[str, ...]
    claim: bool = False
    # the asker reads outcome ``ended`` (a dead node's id that finished, its state in
    # ``LookupReply.states``); without it such an id reads ``lost`` as before
    ended: bool = False
    TYPE: ClassVar[str]


@message("lookup_reply")
class LookupReply:
    """Load store → scheduler, per asked id (same order): an outcome of
    :data:`dodoor.taskindex.OUTCOMES`, the node that reported it ("" when none)
    and the scheduler that claimed it ("" when unknown)."""

    outcomes: tuple[str, ...]
    nodes: tuple[str, ...]
    owners: tuple[str, ...]
    # per id: its terminal state for outcome ``ended``, else "" (empty when none ended)
    states: tuple[str, ...] = ()
    TYPE: ClassVar[str]


@message("task_status")
class TaskStatus:
    """Agent → anyone asking: where a task stands."""

    task_id: str
    state: str
    node_id: str
    queued_ms: float | None = None
    started_ms: float | None = None
    finished_ms: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    # state ``moved``: the agent this one handed the task over to (it answers for it now)
    moved_to: str = omitted_at_default("")
    TYPE: ClassVar[str]


@message("task_statuses")
class TaskStatuses:
    """Agent → scheduler, the answer to a :class:`Lookup` at ``POST /internal/status``:
    the status of each asked id it holds, and the asked ids it does not know."""

    statuses: tuple[TaskStatus, ...]
    missing: tuple[str, ...] = ()
    TYPE: ClassVar[str]


def encode(msg: Any) -> bytes:
    """Serialize a registered message."""
    name = getattr(type(msg), "TYPE", None)
    if name not in _REGISTRY:
        raise TypeError(f"not a wire message: {type(msg).__name__}")
    return msgpack.packb({"v": SCHEMA_VERSION, "type": name, "body": _body(msg)},
                         use_bin_type=True)


def _body(msg: Any) -> dict:
    kind = type(msg)
    body = {n: _to_wire(getattr(msg, n)) for n in _FIELD_NAMES[kind]}
    for name, default in _OMITTED.get(kind, ()):
        value = getattr(msg, name)
        # the field's own value (a tuple travels as a list); an array field's default is
        # None, and an array must not be compared with ==
        at_default = value is None if default is None else value == default
        if at_default:
            del body[name]
    return body


def decode(data: bytes, expect: type | None = None) -> Any:
    """Parse bytes into a message; ``expect`` restricts the accepted type."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        outer = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=MAX_MESSAGE_BYTES)
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"malformed msgpack: {exc}") from exc
    if not isinstance(outer, dict) or set(outer) != {"v", "type", "body"}:
        raise DecodeError("expected a map with keys v, type, body")
    if outer["v"] != SCHEMA_VERSION:
        raise DecodeError(f"unsupported schema version {outer['v']!r}, expected {SCHEMA_VERSION}")
    cls = _REGISTRY.get(outer["type"]) if isinstance(outer["type"], str) else None
    if cls is None:
        raise DecodeError(f"unknown message type {outer['type']!r}")
    if expect is not None and cls is not expect:
        raise DecodeError(f"expected {expect.TYPE!r}, got {cls.TYPE!r}")
    body = outer["body"]
    if not isinstance(body, dict):
        raise DecodeError(f"{cls.TYPE}: body must be a map")
    return _build(cls, body)


def _to_wire(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value, dtype="<f8")
        return [list(arr.shape), arr.tobytes()]
    if isinstance(value, Task):
        return value.to_dict()
    if kind in _FIELD_NAMES:  # a message nested in another travels as its body map
        return _body(value)
    if isinstance(value, tuple):
        return [_to_wire(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


@functools.cache
def _schema(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type hint, optional) of each field of a message class, resolved once
    (``typing.get_type_hints`` per decoded message cost as much as the rest of it)."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name], f.default is not dataclasses.MISSING
                  or f.default_factory is not dataclasses.MISSING)
                 for f in dataclasses.fields(cls))


def _build(cls: type, body: dict) -> Any:
    kwargs: dict[str, Any] = {}
    for name, hint, optional in _schema(cls):
        if name not in body:
            if optional:
                continue
            raise DecodeError(f"{cls.TYPE}: missing field {name!r}")
        kwargs[name] = _from_wire(cls.TYPE, name, hint, body[name])
    if len(kwargs) != len(body):
        extra = set(body) - set(_FIELD_NAMES[cls])
        raise DecodeError(f"{cls.TYPE}: unknown field {sorted(map(str, extra))[0]!r}")
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a message's own check of its fields together
        raise DecodeError(f"{cls.TYPE}: {exc}") from exc


@functools.cache
def _shape(hint: Any) -> tuple[bool, Any, Any, tuple]:
    """(may be None, the hint without None, its origin, its args), worked out once per hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    nullable = False
    if origin is typing.Union or origin is types.UnionType:
        nullable = type(None) in args
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    return nullable, hint, origin, args


def _from_wire(kind: str, name: str, hint: Any, value: Any) -> Any:
    nullable, hint, origin, args = _shape(hint)
    if value is None and nullable:
        return None
    # the plain fields first: they are most of every message
    if hint is str or hint is int:
        if type(value) is hint:
            return value
        if isinstance(value, bool) or not isinstance(value, hint):
            raise DecodeError(f"{kind}.{name}: expected {hint.__name__}, got {type(value).__name__}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(f"{kind}.{name}: expected a number, got {type(value).__name__}")
        return float(value)
    where = f"{kind}.{name}"
    if hint is np.ndarray:
        return _array(where, value)
    if hint is Task:
        try:
            return parse_task(value, where=f"{where}.")
        except ValidationError as exc:
            raise DecodeError(f"{exc.field}: {exc.reason}") from exc
    if origin is tuple and args and args[0] is Task:
        if not isinstance(value, list):
            raise DecodeError(f"{where}: expected a list of tasks")
        return tuple(_from_wire(kind, f"{name}[{i}]", Task, v) for i, v in enumerate(value))
    if origin is tuple and args and getattr(args[0], "TYPE", None) in _REGISTRY:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise DecodeError(f"{where}: expected a list of {args[0].TYPE} maps")
        return tuple(_build(args[0], v) for v in value)
    if origin is tuple and args and args[0] is float:
        if not isinstance(value, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise DecodeError(f"{where}: expected a list of numbers")
        return tuple(float(v) for v in value)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DecodeError(f"{where}: expected a list of strings")
        return tuple(value)
    if origin is Mapping:
        if not isinstance(value, dict):
            raise DecodeError(f"{where}: expected a map")
        return value
    if hint is bool and not isinstance(value, bool):
        raise DecodeError(f"{where}: expected bool, got {type(value).__name__}")
    return value


def _array(where: str, value: Any) -> np.ndarray:
    if (
        not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], list)
        or not isinstance(value[1], bytes)
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31 for n in value[0])
    ):
        raise DecodeError(f"{where}: expected [shape, float64 bytes]")
    shape, raw = value
    expected = 8 * int(np.prod(shape, dtype=np.int64)) if shape else 8
    if len(shape) > 2 or len(raw) != expected:
        raise DecodeError(f"{where}: {len(raw)} bytes do not match shape {shape}")
    return np.frombuffer(raw, dtype="<f8").reshape(shape).copy()
