"""One simulated run: a trace of tasks, a cluster and a policy in, task records out."""

from __future__ import annotations

import dataclasses
import gc
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from dodoor.batch_scoring import worth_stacking
from dodoor.cache import LoadCache
from dodoor.messages import SCHEDULING_TYPES, MessageCounter
from dodoor.policies import PolicyKind, make_policy_spec
from dodoor.errors import NoFitError
from dodoor.resources import NodeSpec, Task, capacity_matrix, check_fits_somewhere
from dodoor.sampling import FeasibleSampler
from dodoor.sim.arrivals import bursty
from dodoor.sim.engine import EventLoop
from dodoor.sim.estimates import declared
from dodoor.sim.fallback import FallbackStats, SimFallback
from dodoor.sim.loadstore import SimLoadStore
from dodoor.sim.network import Network, wire_sizes
from dodoor.sim.node import Entry, SimNode
from dodoor.sim.oracle import Oracle
from dodoor.sim.rebalance import Rebalancer
from dodoor.sim.records import TaskRecords
from dodoor.sim.scheduler import SimScheduler
from dodoor.sim.settings import SimSettings
from dodoor.sim.warm import WarmContainers, warm_key
from dodoor.sim.summary import summarize

log = logging.getLogger(__name__)

# progress(finished_tasks, total_tasks, simulated_ms)
Progress = Callable[[int, int, float], None]
_SLICE = 20_000  # events between progress checks


@dataclass
class SimResult:
    policy: str
    nodes: Sequence[NodeSpec]
    records: TaskRecords
    counter: MessageCounter
    settings: SimSettings
    wall_s: float
    events: int
    snapshots: int
    snapshot_age_ms: float | None = None
    sized_bytes: dict[str, int] | None = None
    resyncs: int = 0
    moves: tuple[int, int] | None = None  # rebalancing: (tasks moved, orders that missed)
    fallback: FallbackStats | None = None

    def summary(self) -> dict:
        policy = self.settings.policy
        settings = {
            "delay_ms": self.settings.delay_ms,
            "report_interval_ms": self.settings.report_interval_ms,
            "schedulers": self.settings.schedulers,
            "seed": self.settings.seed,
            "estimate_sigma": self.settings.estimate_sigma,
            "bursts": (None if self.settings.bursts is None
                       else dataclasses.asdict(self.settings.bursts)),
            "rebalance": self.settings.rebalance,
            "rebalance_min_queue": self.settings.rebalance_min_queue,
            "policy": {f.name: _plain(getattr(policy, f.name))
                       for f in dataclasses.fields(policy) if f.name != "extra"},
        }
        out = summarize(self.policy, self.records, self.nodes, self.counter.counts,
                        self.wall_s, settings, self.settings.util_points)
        by_type = wire_sizes().bytes_by_type(self.counter.counts, self.sized_bytes or {})
        sched_bytes = sum(n for kind, n in by_type.items() if kind in SCHEDULING_TYPES)
        out["messages"]["bytes_by_type"] = by_type
        out["messages"]["bytes_per_task"] = sched_bytes / len(self.records) if self.records else 0.0
        out["snapshots"] = {"pushes": self.snapshots, "resyncs": self.resyncs,
                            "mean_age_ms": self.snapshot_age_ms}
        if self.moves is not None:
            out["rebalance"] = {"moves": self.moves[0], "misses": self.moves[1]}
        if self.fallback is not None:
            out["fallback"] = self.fallback.summary()
        if self.settings.preempt:
            out["preempted"] = self.records.preempted
        return out


def simulate(tasks: Sequence[Task], nodes: Sequence[NodeSpec], policy: str,
             settings: SimSettings | None = None, progress: Progress | None = None,
             progress_every_s: float = 1.0) -> SimResult:
    """Replay ``tasks`` (by arrival) on ``nodes`` under ``policy``; deterministic per seed.

    ``policy`` is a name or a spec such as ``dodoor:d=8,alpha=0.3`` (its settings
    override ``settings.policy``).
    """
    settings = settings or SimSettings()
    started = time.perf_counter()
    tasks = sorted(tasks, key=lambda t: t.arrival_ms)
    if settings.bursts is not None:
        tasks = bursty(tasks, settings.bursts, random.Random(f"{settings.seed}/arrivals"))
    capacity = capacity_matrix(nodes)
    slots = np.array([n.slots for n in nodes], dtype=np.float64)
    demands = _demands(tasks, capacity)
    policies = [make_policy_spec(policy, settings.policy) for _ in range(settings.schedulers)]
    knobs = policies[0].settings
    kind = policies[0].kind
    # what the schedulers are told; the bound knows the true durations
    exact = kind is PolicyKind.ORACLE or settings.estimate_sigma == 0.0
    seen = tasks if exact else declared(tasks, settings.estimate_sigma,
                                        random.Random(f"{settings.seed}/estimates"))
    true_ms = None if exact else [t.duration_ms for t in tasks]
    learn = knobs.learn_durations and kind is PolicyKind.CACHED

    loop = EventLoop(min((t.arrival_ms for t in tasks), default=0.0))
    net = Network(loop, settings.delay_ms)
    records = TaskRecords(tasks)
    store = SimLoadStore(len(nodes), knobs.b, net, delta=knobs.delta_snapshots,
                         adaptive_target_ms=knobs.adaptive_b_target_ms)
    # only the cache-based policies have a load store to report to
    reporter = store.reports if kind is PolicyKind.CACHED else None
    warm_keys = [warm_key(t) for t in tasks]
    sim_nodes: list[SimNode] = []
    rebalancer = None
    if reporter is not None and settings.rebalance == "steal":
        rebalancer = Rebalancer(store, sim_nodes, net, capacity, slots,
                                settings.rebalance_min_queue)
        reporter = rebalancer.reporter()
    sim_nodes += [SimNode(i, spec, loop, net, records, reporter, settings.report_interval_ms,
                         settings.start_overhead_ms, settings.aging_ms, settings.preempt,
                         _warm_pool(settings, warm_keys))
                 for i, spec in enumerate(nodes)]
    oracle = Oracle() if kind is PolicyKind.ORACLE else None
    sampler = FeasibleSampler(capacity)
    schedulers = [
        SimScheduler(i, own_policy, LoadCache(capacity, slots, knobs.k, knobs.echo), sampler, sim_nodes,
                     store, net, loop, random.Random(f"{settings.seed}/scheduler/{i}"), oracle,
                     true_ms)
        for i, own_policy in enumerate(policies)
    ]
    if learn:
        m_sched = len(schedulers)

        def task_ended(entry: Entry) -> None:
            # the completion status goes to the scheduler that placed the task
            schedulers[entry.index % m_sched].on_task_end(seen[entry.index], entry)

        for node in sim_nodes:
            node.on_end = task_ended
    if knobs.delta_snapshots:
        for s in schedulers:
            s.use_delta_snapshots()
    stats = FallbackStats() if settings.fallback is not None else None
    if stats is not None and settings.fallback is not None:
        if kind is not PolicyKind.CACHED:
            raise ValueError(f"the packing fallback needs a cache-based policy, not {policy!r}")
        for s in schedulers:
            s.fallback = SimFallback(settings.fallback, s.cache, sim_nodes, net, stats)
    elif settings.lookahead and not knobs.others and worth_stacking(policies[0], len(nodes)):
        arrays = [arr for arr, _ in demands]
        for s in schedulers:
            s.use_lookahead(seen, arrays, len(schedulers))
    store.subscribe([s.on_snapshot for s in schedulers])

    n = len(tasks)
    m = len(schedulers)
    # the next arrival is scheduled as each one runs: sorted, so a channel holds it
    arrivals = loop.channel()

    def arrive(i: int) -> None:
        task = seen[i]
        arr, tup = demands[i]
        schedulers[i % m].submit(i, task, arr, tup)
        if i + 1 < n:
            arrivals.call_at(tasks[i + 1].arrival_ms, arrive, i + 1)

    if n:
        arrivals.call_at(tasks[0].arrival_ms, arrive, 0)
    last_report = time.perf_counter()
    # The trace, the nodes and the records live for the whole run: frozen, the
    # cyclic collector stops rescanning them every time it runs.
    gc.freeze()
    try:
        while loop.pending:
            loop.run(max_events=_SLICE)
            if progress is not None and time.perf_counter() - last_report >= progress_every_s:
                last_report = time.perf_counter()
                progress(records.finished, n, loop.now)
    finally:
        gc.unfreeze()
    if records.finished != n:
        raise RuntimeError(f"{policy}: only {records.finished} of {n} tasks finished")
    wall_s = time.perf_counter() - started
    log.info("%s: %d tasks, %d events in %.2f s", policy, n, loop.events_run, wall_s)
    decisions = sum(s.decisions for s in schedulers)
    age = sum(s.age_sum_ms for s in schedulers) / decisions if decisions else None
    return SimResult(policy, list(nodes), records, net.counter,
                     dataclasses.replace(settings, policy=knobs), wall_s, loop.events_run,
                     store.snapshots, age, dict(net.counter.bytes), store.resyncs,
                     None if rebalancer is None else (rebalancer.moves, rebalancer.misses),
                     stats)


def _demands(tasks: Sequence[Task], capacity: np.ndarray
             ) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """Each task's demand as a shared array and a tuple; rejects tasks that fit nowhere."""
    memo: dict[tuple[float, float, float], tuple[np.ndarray, tuple[float, float, float]]] = {}
    out = []
    for task in tasks:
        key = (float(task.cores), float(task.memory_mb), float(task.disk_mb))
        found = memo.get(key)
        if found is None:
            arr = np.array(key, dtype=np.float64)
            try:
                check_fits_somewhere(arr, capacity)
            except NoFitError as exc:
                raise NoFitError(exc.field, f"task {task.task_id!r}: {exc.reason}") from exc
            arr.setflags(write=False)
            found = memo[key] = (arr, key)
        out.append(found)
    return out


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _warm_pool(settings: SimSettings, keys: list[str | None]) -> WarmContainers | None:
    """One node's warm containers, when the run models a pool."""
    if settings.warm_start_overhead_ms is None:
        return None
    return WarmContainers(keys, settings.warm_per_image, settings.warm_idle_ms,
                          settings.warm_start_overhead_ms)
