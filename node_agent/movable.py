"""What an agent tells the packing fallback it may move: its queued lower-class tasks.

A scheduler's fallback (scheduler/fallback.py) probes the few nodes of its model
with ``Probe.movable_below``; the answer lists this agent's queued tasks that never
started, of a class below that, beside the node's state row read at the same moment
(no await in between), so the model subtracts exactly what it may move. Only what a
move order could take is listed: the hand-over (node_agent/handover.py) moves a
waiting task, never a running one or a reservation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dodoor.wire import ProbeReply
from node_agent.queue import TASK

if TYPE_CHECKING:
    from node_agent.node import NodeAgent

# most tasks listed per answer: each is a variable per model node in the solver
MAX_MOVABLE = 16


def probe_reply(node_id: str, agent: NodeAgent, below: int) -> ProbeReply:
    """The node's state, and with ``below`` > 0 its movable tasks: lowest class first,
    then the latest arrivals (the ones that would wait longest here)."""
    state = agent.state()
    if below <= 0 or agent.fencing:
        return ProbeReply(node_id, state)
    found = [e for e in agent.queue.waiting if e.kind == TASK and e.task.priority < below]
    found.sort(key=lambda e: (e.task.priority, -e.queued_ms))
    found = found[:MAX_MOVABLE]
    if not found:
        return ProbeReply(node_id, state)
    rows = np.array([(e.task.cores, e.task.memory_mb, e.task.disk_mb, float(e.task.priority))
                     for e in found], dtype=np.float64)
    return ProbeReply(node_id, state, tuple(e.task_id for e in found), rows)
