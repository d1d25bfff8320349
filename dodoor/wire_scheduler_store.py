"""Wire messages between a scheduler and the load store: the scheduler's deltas,
registration and lookups (claims of ids, where tasks are), and the store's snapshots
and lookup replies.

Registered with the codec of :mod:`dodoor.wire_codec`; import them from :mod:`dodoor.wire`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dodoor.wire_codec import message


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
