"""Wire messages between an agent and the load store: the agent's state report and the
store's answer to it (wanted reports, fencing, the lease).

Registered with the codec of :mod:`dodoor.wire_codec`; import them from :mod:`dodoor.wire`.
"""

from __future__ import annotations

from dataclasses import field
from typing import ClassVar, Mapping

import numpy as np

from dodoor.wire_codec import message


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
