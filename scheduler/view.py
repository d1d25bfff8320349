"""A scheduler's view of the cluster: node table, load cache and sampler from snapshots."""

from __future__ import annotations

import asyncio

import numpy as np

from dodoor.cache import N_STATE, STATE_COLUMNS, LoadCache
from dodoor.errors import NoFitError
from dodoor.resources import N_RESOURCES, RESOURCES, Task, check_fits_somewhere
from dodoor.sampling import FeasibleSampler
from dodoor.wire import Deltas, Snapshot, SnapshotDelta


# Said in every ``GET /v1/nodes`` body: on an idle cluster the view is old by design,
# and a reader who does not know that takes finished tasks for running ones.
VIEW_ABOUT = ("this scheduler's cached view: the load store's last snapshot plus this "
              "scheduler's own placements since. Snapshots are pushed every b placements "
              "cluster-wide, and while nothing is placed only when the nodes' reports change "
              "their state, at most every refresh_ms of the load store (1 s by default), so "
              "the view may be that old (see snapshot_age_ms). The load store's "
              "GET /v1/nodes has each node's last report.")


class NoNodesError(Exception):
    """No live node is known (no snapshot yet, or every node is dead)."""


class ClusterView:
    """Live nodes as last pushed by the load store, plus this scheduler's own deltas.

    When a snapshot brings the same nodes, the cache keeps its unflushed deltas
    (``LoadCache.replace``); when the node set changes, the cache and sampler are
    rebuilt and ``generation`` moves on, so indices taken before are known stale.
    """

    def __init__(self, scheduler_id: str, k: int) -> None:
        self.scheduler_id = scheduler_id
        self.k = k
        self.node_ids: tuple[str, ...] = ()
        self.urls: tuple[str, ...] = ()
        self.index: dict[str, int] = {}
        self.cache = LoadCache(np.zeros((0, N_RESOURCES)), np.zeros(0), k)
        self.sampler = FeasibleSampler(self.cache.capacity)
        self.generation = 0
        self.snapshot_seq = -1
        self.snapshot_ms: float | None = None
        self.snapshots = 0
        self.epoch = ""
        # nodes the load store declared dead (their tasks are ``lost``); a node neither
        # in view nor here is only out of sight: its tasks are ``unknown``
        self.dead: frozenset[str] = frozenset()
        self._delta_seq = 0
        self._installed = asyncio.Event()  # set (and cleared) by each full snapshot
        self._lives: dict[str, str] = {}  # agent url -> the node life the store last saw

    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    def check_fits(self, tasks: list[Task], batch: bool) -> None:
        """Raise NoFitError (field ``tasks[i].<resource>``) or NoNodesError unless every
        task fits some live node."""
        capacity = self.cache.capacity
        if capacity.shape[0] == 0:
            raise NoNodesError("no live nodes are known yet")
        fitting: set[tuple[float, float, float]] = set()  # batches repeat a few demands
        for i, task in enumerate(tasks):
            key = (task.cores, task.memory_mb, task.disk_mb)
            if key in fitting:
                continue
            if self.sampler.feasible(task.demand()).size:
                fitting.add(key)
                continue
            try:
                check_fits_somewhere(task.demand(), capacity)
            except NoFitError as exc:
                field = f"tasks[{i}].{exc.field}" if batch else exc.field
                raise NoFitError(field, exc.reason) from exc

    def apply(self, snap: Snapshot, now_ms: float) -> Deltas | None:
        """Install a snapshot; returns unflushed deltas of a replaced node set, if any."""
        n = len(snap.node_ids)
        shapes = {
            "urls": (len(snap.urls), n),
            "capacity": (snap.capacity.shape, (n, N_RESOURCES)),
            "slots": (snap.slots.shape, (n,)),
            "state": (snap.state.shape, (n, N_STATE)),
        }
        for name, (got, want) in shapes.items():
            if got != want and not (n == 0 and np.size(got) in (0, 1)):
                raise ValueError(f"snapshot.{name} has shape {got}, expected {want}")
        if len(set(snap.node_ids)) != n:
            raise ValueError("snapshot.node_ids has duplicates")
        capacity = snap.capacity.reshape(n, N_RESOURCES)
        slots = snap.slots.reshape(n)
        state = snap.state.reshape(n, N_STATE)
        leftover = None
        same = (
            tuple(snap.node_ids) == self.node_ids
            and np.array_equal(capacity, self.cache.capacity)
            and np.array_equal(slots, self.cache.slots)
        )
        if not same:
            leftover = self.take_deltas(self.cache.flush())
            self.cache = LoadCache(capacity, slots, self.k)
            self.sampler = FeasibleSampler(self.cache.capacity)
            self.node_ids = tuple(snap.node_ids)
            self.index = {node: i for i, node in enumerate(self.node_ids)}
            self.generation += 1
        self.urls = tuple(u.rstrip("/") for u in snap.urls)
        lives = snap.incarnations if len(snap.incarnations) == n else ("",) * n
        self._lives = dict(zip(self.urls, lives))
        self.cache.replace(state)
        self.snapshot_seq = snap.seq
        self.epoch = snap.epoch
        self.dead = frozenset(snap.dead)
        self.snapshot_ms = now_ms
        self.snapshots += 1
        self._installed.set()
        self._installed = asyncio.Event()
        return leftover

    def life_at(self, url: str) -> str:
        """The life of the node at ``url`` that enqueues aim at ("" when unknown)."""
        return self._lives.get(url, "")

    async def wait_for_node(self, node_id: str, timeout_s: float) -> int | None:
        """The node's index once a snapshot lists it, waiting up to ``timeout_s`` (the
        load store may know a node that came back before this view does); None if not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (idx := self.index.get(node_id)) is None and node_id not in self.dead:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._installed.wait(), left)
            except TimeoutError:
                return None
        return idx

    def apply_delta(self, msg: SnapshotDelta, now_ms: float) -> bool:
        """Install the changed rows of a delta snapshot; False (nothing applied) when it
        does not extend the snapshot held here (gap, other epoch, unknown node) — the
        load store must then send a full one."""
        if msg.epoch != self.epoch or msg.base_seq != self.snapshot_seq:
            return False
        idx = [self.index.get(node) for node in msg.node_ids]
        if any(i is None for i in idx):
            return False
        rows = msg.state.reshape(len(idx), N_STATE)
        self.cache.replace_rows(np.asarray(idx, dtype=np.intp), rows)
        self.dead = frozenset(msg.dead)
        self.snapshot_seq = msg.seq
        self.snapshot_ms = now_ms
        self.snapshots += 1
        return True

    def take_deltas(self, batch) -> Deltas | None:
        """A :class:`~dodoor.cache.DeltaBatch` as the wire message, under node ids."""
        if batch is None:
            return None
        self._delta_seq += 1
        return Deltas(
            scheduler_id=self.scheduler_id,
            seq=self._delta_seq,
            node_ids=tuple(self.node_ids[i] for i in batch.nodes),
            deltas=batch.deltas,
            placements=batch.placements,
        )

    def describe(self, now_ms: float) -> dict:
        """The ``GET /v1/nodes`` body."""
        nodes = []
        for i, node in enumerate(self.node_ids):
            cap = self.cache.capacity[i]
            state = self.cache.state[i]
            nodes.append({
                "id": node,
                "url": self.urls[i],
                "capacity": {name: float(cap[j]) for j, name in enumerate(RESOURCES)},
                "slots": int(self.cache.slots[i]),
                "state": {name: float(state[j]) for j, name in enumerate(STATE_COLUMNS)},
            })
        return {
            "nodes": nodes,
            "snapshot_seq": self.snapshot_seq,
            "snapshot_age_ms": self.age_ms(now_ms),
            "about": VIEW_ABOUT,
        }

    def age_ms(self, now_ms: float) -> float | None:
        return None if self.snapshot_ms is None else now_ms - self.snapshot_ms
