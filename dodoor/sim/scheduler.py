"""A simulated scheduler: drives one policy object with the information its kind asks for.

The flow per :class:`~dodoor.policies.PolicyKind` mirrors the live system:

* NONE / CACHED — choose at once from the local :class:`~dodoor.cache.LoadCache`
  (CACHED also records the placement and sends a ``deltas`` batch every k);
* PROBE — ``probe`` every candidate, choose when all ``probe_reply`` are in;
* RESERVE — ``reserve`` on every candidate; the first ``confirm`` gets the task
  (``enqueue``), every other candidate a ``cancel``;
* POOL — place from the policy's probe pool, then send its new probes;
* ORACLE — every feasible node with its true state and true earliest start.

Every task costs one ``enqueue``, whatever the policy.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Sequence

import numpy as np

from dodoor.cache import CandidateView, LoadCache
from dodoor.estimates import DurationLearner, duration_key
from dodoor.policies import PlacementPolicy, PolicyKind
from dodoor.projection import Projection
from dodoor.resources import Task
from dodoor.sampling import FeasibleSampler
from dodoor.snapshots import DeltaReceiver, Outcome, SnapshotUpdate
from dodoor.sim.engine import EventLoop
from dodoor.sim.fallback import SimFallback, has_room
from dodoor.sim.loadstore import SimLoadStore
from dodoor.sim.lookahead import Lookahead
from dodoor.sim.network import Network, wire_sizes
from dodoor.sim.node import Entry, SimNode
from dodoor.sim.oracle import Oracle

Demand = tuple[float, float, float]


class _ProbeRound:
    __slots__ = ("index", "task", "demand", "dt", "nodes", "states", "missing")

    def __init__(self, index: int, task: Task, demand: np.ndarray, dt: Demand,
                 nodes: list[int]) -> None:
        self.index = index
        self.task = task
        self.demand = demand
        self.dt = dt
        self.nodes = nodes
        self.states: list[np.ndarray | None] = [None] * len(nodes)
        self.missing = len(nodes)


class _SparrowJob:
    """One task's reservations; the first confirm wins."""

    __slots__ = ("scheduler", "nodes", "entries", "winner")

    def __init__(self, scheduler: "SimScheduler", nodes: list[int]) -> None:
        self.scheduler = scheduler
        self.nodes = nodes
        self.entries: list[Entry] = []
        self.winner: int | None = None

    def on_confirm(self, entry: Entry, node: int) -> None:
        self.scheduler.on_confirm(self, entry, node)


class SimScheduler:
    def __init__(self, index: int, policy: PlacementPolicy, cache: LoadCache,
                 sampler: FeasibleSampler, nodes: Sequence[SimNode], store: SimLoadStore,
                 net: Network, loop: EventLoop, rng: random.Random,
                 oracle: Oracle | None = None,
                 true_ms: Sequence[float] | None = None) -> None:
        self.index = index
        self.policy = policy
        self.cache = cache
        self.sampler = sampler
        self.nodes = nodes
        self.store = store
        self.net = net
        self.loop = loop
        self.rng = rng
        self.oracle = oracle
        # each task's true duration when the tasks it is given carry wrong estimates
        self.true_ms = true_ms
        # durations learned from this scheduler's completions (cache-based policies)
        self.learner = (DurationLearner() if policy.settings.learn_durations
                        and policy.kind is PolicyKind.CACHED else None)
        # the others' placements since the snapshot, projected into the cache
        self.projection = (Projection(cache, policy.settings.others) if policy.settings.others
                           and policy.kind is PolicyKind.CACHED else None)
        # snapshot age: when the store built the snapshot in the cache (the
        # empty start state is exact at the start), summed over decisions
        self.snapshot_made_ms = loop.now
        self.age_sum_ms = 0.0
        self.decisions = 0
        self.receiver: DeltaReceiver | None = None
        self.lookahead: Lookahead | None = None
        self.fallback: SimFallback | None = None  # dodoor.sim.fallback, when enabled
        self._delta_size = wire_sizes().deltas
        handlers = {
            PolicyKind.NONE: self._submit_local,
            PolicyKind.CACHED: self._submit_cached,
            PolicyKind.PROBE: self._submit_probe,
            PolicyKind.RESERVE: self._submit_reserve,
            PolicyKind.POOL: self._submit_pool,
            PolicyKind.ORACLE: self._submit_oracle,
        }
        self.submit = handlers[policy.kind]
        if policy.kind is PolicyKind.ORACLE and oracle is None:
            raise ValueError(f"policy {policy.name!r} needs an oracle")

    def use_lookahead(self, tasks: Sequence[Task], demands: Sequence[np.ndarray],
                      step: int) -> None:
        """Decide from batched scores (see :mod:`dodoor.sim.lookahead`); this scheduler
        gets the tasks ``index, index + step, ...`` of ``tasks``."""
        self.lookahead = Lookahead(self.policy, self.cache, self.sampler, self.rng, tasks,
                                   demands, step)

    def use_delta_snapshots(self) -> None:
        """Accept delta snapshots (checked against seq and epoch) from now on."""
        self.receiver = DeltaReceiver(self.cache.n_nodes, self.cache.state.shape[1])

    def on_snapshot(self, update: SnapshotUpdate) -> None:
        """A ``snapshot`` (full or delta) arrives from the load store."""
        receiver = self.receiver
        if receiver is not None:
            if receiver.accept(update) is Outcome.RESYNC:
                self.net.send("register", self.store.resync, self.index)
                return
        if update.full:
            self.cache.replace(update.rows)
        else:
            self.cache.replace_rows(update.nodes, update.rows)
        if self.projection is not None:
            self.projection.on_snapshot()
        if self.lookahead is not None:
            self.lookahead.invalidate()
        self.snapshot_made_ms = update.made_ms

    def on_task_end(self, declared: Task, entry: Entry) -> None:
        """One of this scheduler's tasks ended (its completion status): learn from it."""
        if self.learner is not None:
            self.learner.observe(duration_key(declared), declared.duration_ms, entry.true_ms)

    @property
    def mean_snapshot_age_ms(self) -> float | None:
        return self.age_sum_ms / self.decisions if self.decisions else None

    def _entry(self, index: int, dt: Demand, estimate: float, job: object = None) -> Entry:
        """The task as it travels: it runs for its true duration, and the node counts
        the estimate the scheduler sends with it as its pending work."""
        true = self.true_ms
        return Entry(index, dt, estimate if true is None else true[index], job, estimate)

    def _enqueue(self, index: int, node: int, dt: Demand, estimate: float) -> Entry:
        entry = self._entry(index, dt, estimate)
        self.net.send("enqueue", self.nodes[node].enqueue, entry)
        return entry

    # -- NONE / CACHED --------------------------------------------------------
    def _submit_local(self, index: int, task: Task, demand: np.ndarray, dt: Demand) -> None:
        policy = self.policy
        cands = policy.candidates(task, demand, self.sampler, self.rng)
        node = policy.choose(task, demand, self.cache.view(cands), self.rng)
        self._enqueue(index, node, dt, task.duration_ms)

    def _submit_cached(self, index: int, task: Task, demand: np.ndarray, dt: Demand) -> None:
        if self.lookahead is not None:
            node = self.lookahead.decide(index)
        else:
            if self.projection is not None:
                self.projection.advance()
            policy = self.policy
            cands = policy.candidates(task, demand, self.sampler, self.rng)
            node = policy.choose(task, demand, self.cache.view(cands), self.rng)
            fallback = self.fallback
            if fallback is not None and not has_room(self.cache, cands, demand):
                packed = fallback.place(index, task, demand)
                if packed is not None:
                    node = packed
                    fallback.stats.placed_tasks.append(index)
        if self.learner is not None:
            learned = self.learner.estimate(duration_key(task), task.duration_ms)
            task = dataclasses.replace(task, duration_ms=learned)
        self._enqueue(index, node, dt, task.duration_ms)
        self.age_sum_ms += self.loop.now - self.snapshot_made_ms
        self.decisions += 1
        batch = self.cache.record_placement(node, task)
        if self.projection is not None:
            self.projection.on_placement(task)
        if batch is not None:
            base, per_row = self._delta_size
            self.net.send_sized("deltas", base + per_row * len(batch.nodes),
                                self.store.on_deltas, batch)

    # -- PROBE ------------------------------------------------------------------
    def _submit_probe(self, index: int, task: Task, demand: np.ndarray, dt: Demand) -> None:
        cands = self.policy.candidates(task, demand, self.sampler, self.rng)
        rnd = _ProbeRound(index, task, demand, dt, cands)
        for pos, node in enumerate(cands):
            self.net.send("probe", self.nodes[node].probe, self._on_probe_reply, rnd, pos)

    def _on_probe_reply(self, rnd: _ProbeRound, pos: int, node: int, state: np.ndarray) -> None:
        rnd.states[pos] = state
        rnd.missing -= 1
        if rnd.missing:
            return
        idx = np.asarray(rnd.nodes, dtype=np.intp)
        view = CandidateView(idx, self.cache.capacity[idx], np.vstack(rnd.states),
                             self.cache.slots[idx])
        chosen = self.policy.choose(rnd.task, rnd.demand, view, self.rng)
        self._enqueue(rnd.index, chosen, rnd.dt, rnd.task.duration_ms)

    # -- RESERVE ----------------------------------------------------------------
    def _submit_reserve(self, index: int, task: Task, demand: np.ndarray, dt: Demand) -> None:
        cands = self.policy.candidates(task, demand, self.sampler, self.rng)
        job = _SparrowJob(self, cands)
        for node in cands:
            entry = self._entry(index, dt, task.duration_ms, job)
            job.entries.append(entry)
            self.net.send("reserve", self.nodes[node].reserve, entry)

    def on_confirm(self, job: _SparrowJob, entry: Entry, node: int) -> None:
        """A ``confirm`` arrives: the first one gets the task, the others are cancelled."""
        if job.winner is not None:
            return  # this node's cancel is already on its way
        job.winner = node
        self.net.send("enqueue", self.nodes[node].assign, entry)
        for other_node, other in zip(job.nodes, job.entries):
            if other is not entry:
                self.net.send("cancel", self.nodes[other_node].cancel, other)

    # -- POOL -------------------------------------------------------------------
    def _submit_pool(self, index: int, task: Task, demand: np.ndarray, dt: Demand) -> None:
        policy = self.policy
        node = policy.place_from_pool(task, demand, self.sampler, self.loop.now, self.rng)
        self._enqueue(index, node, dt, task.duration_ms)
        for target in policy.probe_targets(self.sampler, self.rng):
            self.net.send("probe", self.nodes[target].probe, self._on_pool_reply)

    def _on_pool_reply(self, node: int, state: np.ndarray) -> None:
        self.policy.on_probe_reply(node, state, self.loop.now)

    # -- ORACLE -----------------------------------------------------------------
    def _submit_oracle(self, index: int, task: Task, demand: np.ndarray, dt: Demand) -> None:
        assert self.oracle is not None
        cands = self.policy.candidates(task, demand, self.sampler, self.rng)
        arrival = self.loop.now + self.net.delay_ms
        nodes = self.nodes
        starts = np.array([self.oracle.earliest_start(nodes[j], dt, arrival) for j in cands])
        idx = np.asarray(cands, dtype=np.intp)
        state = np.array([self.oracle.true_state(nodes[j]) for j in cands], dtype=np.float64)
        view = CandidateView(idx, self.cache.capacity[idx], state, self.cache.slots[idx], starts)
        chosen = self.policy.choose(task, demand, view, self.rng)
        entry = self._enqueue(index, chosen, dt, task.duration_ms)
        nodes[chosen].inbound.append((arrival, entry))
        nodes[chosen].version += 1
