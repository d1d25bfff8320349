"""Wire messages between components, and the one encode/decode seam: every name in one import.

Every message is a frozen dataclass registered under a type name. On the wire
it is a msgpack map ``{"v": SCHEMA_VERSION, "type": name, "body": {...}}``
sent as ``Content-Type: application/msgpack``. Numeric vectors and matrices
travel as raw little-endian float64 (``[shape, bytes]``), never pickles. Any
failure to decode — bad msgpack, wrong version, unknown type, missing or
mistyped field — raises :class:`~dodoor.errors.DecodeError`.

The codec (registry, :func:`encode`, :func:`decode`, fields omitted at their
default) is :mod:`dodoor.wire_codec`; the messages live by who speaks them:
:mod:`dodoor.wire_scheduler_agent`, :mod:`dodoor.wire_scheduler_store` and
:mod:`dodoor.wire_agent_store`. Callers import every one of them from here, which
also registers them all before anything is decoded.
"""

from __future__ import annotations

from dodoor.wire_agent_store import NodeState, ReportAck
from dodoor.wire_codec import (CONTENT_TYPE, MAX_MESSAGE_BYTES, OMIT_DEFAULT, SCHEMA_VERSION,
                               decode, encode, message, omitted_at_default)
from dodoor.wire_scheduler_agent import (Cancel, CancelTask, Confirm, Enqueue, EnqueueBatch,
                                         MoveOrder, Probe, ProbeReply, Reserve, TaskStatus,
                                         TaskStatuses)
from dodoor.wire_scheduler_store import (Deltas, Lookup, LookupReply, Register, Snapshot,
                                         SnapshotDelta)

__all__ = [
    # the codec
    "CONTENT_TYPE", "MAX_MESSAGE_BYTES", "OMIT_DEFAULT", "SCHEMA_VERSION", "decode", "encode",
    "message", "omitted_at_default",
    # scheduler <-> agent (and the load store's move order)
    "Cancel", "CancelTask", "Confirm", "Enqueue", "EnqueueBatch", "MoveOrder", "Probe",
    "ProbeReply", "Reserve", "TaskStatus", "TaskStatuses",
    # scheduler <-> load store
    "Deltas", "Lookup", "LookupReply", "Register", "Snapshot", "SnapshotDelta",
    # agent <-> load store
    "NodeState", "ReportAck",
]

# New messages: define them in the module of who speaks them (the three above, each
# importing ``message`` and ``omitted_at_default`` from dodoor.wire_codec), then import
# and list them here. A block of new messages appended below this line until it is moved
# there also works once this module imports what its classes use (typing.ClassVar,
# numpy, dodoor.resources.Task, ...) and it adds its names to __all__.
