"""The load store daemon's state: the core's load state, keyed by node id, plus membership.

Node rows, deltas, b-counting and snapshot versions are
:class:`dodoor.loadstate.LoadState`; around it this keeps what only the daemon
has: node ids, urls and capacities, dead-node expiry, the durable membership
and fences, and the task index. Pure (no I/O): time comes from an injected
clock, so expiry and counting are tested exactly on a ManualClock. The app in
:mod:`scheduler.loadstore.app` does the pushing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from dodoor.cache import N_STATE
from dodoor.clock import Clock
from dodoor.loadstate import LoadState
from dodoor.resources import N_RESOURCES
from dodoor.snapshots import DeltaPublisher
from dodoor.taskindex import TaskIndex
from dodoor.wire import Deltas, NodeState, Snapshot, SnapshotDelta
from scheduler.loadstore.membership import Membership

log = logging.getLogger(__name__)


# Said in every ``GET /v1/nodes`` body of the store (the schedulers' view differs).
STORE_ABOUT = ("the load store's view: each node's last report plus the placements the "
               "schedulers counted on it since (report_age_ms: how old that report is; idle "
               "agents report every heartbeat). Schedulers see it only as of their last "
               "snapshot.")


@dataclass
class NodeRecord:
    node_id: str
    url: str
    capacity: np.ndarray  # (R,)
    slots: int
    row: int  # the node's row in the LoadState
    last_report_ms: float
    seq: int
    alive: bool = True
    utilization: dict | None = None
    incarnation: str = ""
    # the node's ids are all in this store's task index (it sent a complete resend)
    indexed: bool = False
    # False for a member remembered from before a store restart that has not
    # reported to this store yet: not in snapshots, but it expires like the rest
    reported_here: bool = True


class LoadStoreState:
    """Node states plus deltas; decides when a snapshot is due.

    ``report``/``add_deltas``/``expire`` return True when every scheduler
    should get a snapshot: the live node set changed, or b placements were
    counted since the last push.
    """

    def __init__(self, b: int, dead_after_ms: float, clock: Clock,
                 adaptive_b_target_ms: float = 0.0, delta_snapshots: bool = False,
                 epoch: str = "", membership: Membership | None = None,
                 index: TaskIndex | None = None) -> None:
        self.loads = LoadState(0, b, adaptive_b_target_ms, start_ms=clock.now_ms())
        self.dead_after_ms = dead_after_ms
        self.clock = clock
        self.nodes: dict[str, NodeRecord] = {}
        # delta snapshots: rows indexed by position among the live nodes (by id);
        # any change of that set makes every scheduler's next update full
        self.epoch = epoch
        self.publisher = DeltaPublisher(0, epoch) if delta_snapshots else None
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self.index = index if index is not None else TaskIndex(clock)
        # durable (scheduler.loadstore.membership): saved by the app when ``membership_dirty``
        self.membership = membership if membership is not None else Membership()
        self.membership_dirty = False
        now = clock.now_ms()
        for node_id, (url, incarnation) in self.membership.members.items():
            # remembered members get dead_after_ms to report to this store, as if they
            # had just reported; the ones that never do are declared dead
            self.nodes[node_id] = NodeRecord(
                node_id, url, np.zeros(N_RESOURCES), 1, self.loads.grow(), now, 0,
                incarnation=incarnation, reported_here=False)

    @property
    def b(self) -> int:
        return self.loads.b

    @property
    def placements(self) -> int:
        return self.loads.placements

    @property
    def since_push(self) -> int:
        return self.loads.since_push

    @property
    def seq(self) -> int:
        return self.loads.seq

    @property
    def changed(self) -> bool:
        """Did a report change a node's state since the last snapshot was taken?"""
        return self.loads.changed

    def live(self) -> list[NodeRecord]:
        return [self.nodes[k] for k in sorted(self.nodes)
                if self.nodes[k].alive and self.nodes[k].reported_here]

    def live_states(self, live: list[NodeRecord] | None = None) -> np.ndarray:
        """The state (report + deltas) of every live node, in :meth:`live` order."""
        live = self.live() if live is None else live
        return self.loads.view([r.row for r in live]).reshape(len(live), N_STATE)

    def dead(self) -> tuple[str, ...]:
        """Nodes declared dead and not back: their tasks are ``lost``."""
        return tuple(sorted(n for n, rec in self.nodes.items() if not rec.alive))

    def index_complete(self) -> bool:
        """Does the task index hold every id of every live node? Not until each has
        resent its journal's ids to this store (after a restart, say): before, an id
        unknown here may be held by a node, so it must not be claimed as new."""
        return all(rec.indexed for rec in self.nodes.values() if rec.alive)

    def is_dead(self, node_id: str) -> bool:
        rec = self.nodes.get(node_id)
        return rec is not None and not rec.alive

    def is_fenced(self, msg: NodeState) -> bool:
        """Is this report from a node life that was declared dead?"""
        return self.membership.is_fenced(msg.node_id, msg.incarnation)

    def kept(self, msg: NodeState) -> tuple[str, ...]:
        """For a fenced report: its ended ids whose end this store heard before the
        death (schedulers answer them with their state, so the agent keeps them)."""
        ended = [t for t, s in zip(msg.task_ids, msg.task_states) if s]
        return self.index.ended_at(msg.node_id, ended)

    def report(self, msg: NodeState) -> bool:
        """Install an agent's full state; True when the node is new, revived or resized."""
        capacity = np.asarray(msg.capacity, dtype=np.float64).reshape(-1)
        state = np.asarray(msg.state, dtype=np.float64).reshape(-1)
        if capacity.shape != (N_RESOURCES,) or state.shape != (N_STATE,):
            raise ValueError(f"node_state of {msg.node_id!r}: capacity must have {N_RESOURCES} "
                             f"values and state {N_STATE}, got {capacity.size} and {state.size}")
        if not (np.all(np.isfinite(capacity)) and np.all(np.isfinite(state))):
            raise ValueError(f"node_state of {msg.node_id!r}: non-finite capacity or state")
        if np.any(capacity < 0) or msg.slots < 1:
            raise ValueError(f"node_state of {msg.node_id!r}: negative capacity or slots < 1 "
                             f"(capacity {capacity.tolist()}, slots {msg.slots})")
        if self.is_fenced(msg):
            raise ValueError(f"node_state of {msg.node_id!r}: life {msg.incarnation!r} was "
                             f"declared dead (fenced)")
        now = self.clock.now_ms()
        if msg.task_ids:
            self.index.placed(msg.node_id, msg.task_ids, msg.task_states)
        indexed = msg.task_ids_complete
        url = msg.url.rstrip("/")
        if self.membership.members.get(msg.node_id) != (url, msg.incarnation):
            self.membership.members[msg.node_id] = (url, msg.incarnation)
            self.membership_dirty = True
        rec = self.nodes.get(msg.node_id)
        if rec is None:
            row = self.loads.grow()
            self.loads.report([row], state)
            self.nodes[msg.node_id] = NodeRecord(
                msg.node_id, url, capacity, int(msg.slots), row, now, msg.seq,
                utilization=dict(msg.utilization), incarnation=msg.incarnation, indexed=indexed,
            )
            log.info("node %s joined (%s)", msg.node_id, msg.url)
            self._reindex()
            return True
        changed = (not rec.alive or not rec.reported_here or rec.url != url
                   or rec.slots != msg.slots or not np.array_equal(rec.capacity, capacity))
        if not rec.alive:
            log.info("node %s is back (life %s)", msg.node_id, msg.incarnation or "-")
        rec.reported_here = True
        rec.incarnation = msg.incarnation
        rec.indexed = rec.indexed or indexed
        rec.url = msg.url.rstrip("/")
        rec.capacity = capacity
        rec.slots = int(msg.slots)
        self.loads.report([rec.row], state)
        rec.last_report_ms = now
        rec.seq = msg.seq
        rec.alive = True
        rec.utilization = dict(msg.utilization)
        if changed:
            self._reindex()
        elif self.publisher is not None:
            self.publisher.mark(self._index[msg.node_id])
        return changed

    def add_deltas(self, msg: Deltas) -> bool:
        """Add a scheduler's deltas; True when b placements were counted since the last push."""
        deltas = np.asarray(msg.deltas, dtype=np.float64)
        if len(msg.node_ids) == 0:
            deltas = deltas.reshape(0, N_STATE)
        if deltas.shape != (len(msg.node_ids), N_STATE):
            raise ValueError(f"deltas of shape {deltas.shape} for {len(msg.node_ids)} nodes")
        if not np.all(np.isfinite(deltas)) or msg.placements < 0:
            raise ValueError("deltas must be finite and placements >= 0")
        touched: list[str] = []
        rows: list[int] = []
        picked: list[int] = []
        for i, node in enumerate(msg.node_ids):
            rec = self.nodes.get(node)
            if rec is not None and rec.alive:
                touched.append(node)
                rows.append(rec.row)
                picked.append(i)
        if rows:
            self.loads.add_deltas(rows, deltas[picked])
        if self.publisher is not None and touched:
            self.publisher.mark([self._index[node] for node in touched])
        return self.loads.count(msg.placements, self.clock.now_ms())

    def mark_changed(self, positions: list[int]) -> None:
        """Rows at these positions among the live nodes changed outside a report or a
        delta batch (a move charged by scheduler.loadstore.rebalance)."""
        if self.publisher is not None:
            self.publisher.mark(positions)

    def forgive_stall(self, stalled_ms: float) -> None:
        """Do not count ``stalled_ms`` of the store's own downtime against live nodes."""
        for rec in self.nodes.values():
            if rec.alive:
                rec.last_report_ms += stalled_ms

    def expire(self) -> bool:
        """Mark nodes without a report for dead_after_ms dead; True if any died."""
        now = self.clock.now_ms()
        died = False
        for rec in self.nodes.values():
            if rec.alive and now - rec.last_report_ms > self.dead_after_ms:
                rec.alive = False
                died = True
                # that life must never run its unfinished tasks: they are reported lost
                self.membership.fence(rec.node_id, rec.incarnation)
                self.membership_dirty = True
                log.warning("node %s is dead: no report for %.0f ms (life %s fenced)",
                            rec.node_id, now - rec.last_report_ms, rec.incarnation or "-")
        if died:
            self._reindex()
        return died

    def snapshot(self) -> Snapshot:
        """Every live node's capacity and state (report + deltas), ordered by id."""
        live = self.live()
        seq = self.loads.next_seq()
        n = len(live)
        return Snapshot(
            seq=seq,
            node_ids=tuple(r.node_id for r in live),
            urls=tuple(r.url for r in live),
            capacity=np.array([r.capacity for r in live]).reshape(n, N_RESOURCES),
            slots=np.array([float(r.slots) for r in live]).reshape(n),
            state=self.live_states(live),
            dead=self.dead(), incarnations=tuple(r.incarnation for r in live),
        )

    def _reindex(self) -> None:
        if self.publisher is None:
            return
        self._order = [r.node_id for r in self.live()]
        self._index = {node: i for i, node in enumerate(self._order)}
        self.publisher.resize(len(self._order))

    def updates_for(self, schedulers: list[str]) -> dict[str, Snapshot | SnapshotDelta]:
        """Delta mode: each scheduler's next message, full or only the changed rows."""
        assert self.publisher is not None
        live = self.live()
        n = len(live)
        state = self.live_states(live)
        out: dict[str, Snapshot | SnapshotDelta] = {}
        for sid in schedulers:
            update = self.publisher.update_for(sid, state, self.clock.now_ms())
            if update.full:
                out[sid] = Snapshot(
                    seq=update.seq, node_ids=tuple(r.node_id for r in live),
                    urls=tuple(r.url for r in live),
                    capacity=np.array([r.capacity for r in live]).reshape(n, N_RESOURCES),
                    slots=np.array([float(r.slots) for r in live]).reshape(n),
                    state=update.rows, epoch=self.epoch, dead=self.dead(),
                    incarnations=tuple(r.incarnation for r in live))
            else:
                out[sid] = SnapshotDelta(
                    seq=update.seq, base_seq=update.base_seq, epoch=self.epoch,
                    node_ids=tuple(self._order[i] for i in update.nodes.tolist()),
                    state=update.rows.reshape(update.n_rows, N_STATE), dead=self.dead())
        self.loads.next_seq()
        return out

    def describe(self) -> dict:
        now = self.clock.now_ms()
        return {"nodes": [
            {"id": r.node_id, "url": r.url, "alive": r.alive, "slots": r.slots,
             "incarnation": r.incarnation, "reported": r.reported_here,
             "capacity": r.capacity.tolist(), "state": self.loads.view([r.row])[0].tolist(),
             "report_age_ms": now - r.last_report_ms, "utilization": r.utilization or {}}
            for r in (self.nodes[k] for k in sorted(self.nodes))
        ], "snapshot_seq": self.seq, "placements": self.placements, "about": STORE_ABOUT}
