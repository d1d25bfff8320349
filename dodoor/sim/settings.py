"""Typed settings of one simulator run, built once at the entry point."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dodoor.errors import ValidationError
from dodoor.packing import PackingSettings
from dodoor.priority import DEFAULT_AGING_MS
from dodoor.settings import PolicySettings
from dodoor.sim.arrivals import Bursts
from dodoor.sim.estimates import check_sigma

REBALANCE_MODES = ("none", "steal")


@dataclass(frozen=True)
class SimSettings:
    """delay_ms: one-way delay of every message; report_interval_ms: the least
    time between two state reports of one node; schedulers: how many
    schedulers share the arrivals (round-robin); seed: the run seed, from which
    every component's random stream is derived; util_points: samples of the
    cluster-utilization curve; lookahead: let cache-based policies that decide by
    their scores alone score a scheduler's next tasks in batches
    (:mod:`dodoor.sim.lookahead`: same results, faster); start_overhead_ms: time a
    node's slot is held beyond each task's duration — what a container's create,
    start and removal add on docker agents (``dodoor.tools.overhead`` measures it), 0
    for the sleep executor. Schedulers still score with the declared durations,
    as they do live. aging_ms: the agents' starvation guard (a waiting task's
    class rises by one per aging_ms, 0 turns it off); preempt: agents stop and
    requeue lower-class running tasks for a higher-class newcomer; fallback: the
    packing fallback's settings (``dodoor.packing``; None: no fallback) —
    docs/design.md §12.
    warm_start_overhead_ms: with it, nodes keep warm containers
    (:mod:`dodoor.sim.warm`): a function task that finds one of its image idle on
    its node pays this instead of ``start_overhead_ms``; warm_per_image and
    warm_idle_ms bound the pool as the agent's ``--docker-warm-*`` settings do.

    Realistic conditions (docs/simulator.md): estimate_sigma: σ of the log-normal
    error of every declared duration (:mod:`dodoor.sim.estimates`; 0: exact);
    bursts: on/off arrivals with the mean load held (:mod:`dodoor.sim.arrivals`;
    None: the trace's own pattern); rebalance: ``steal`` lets the load store move
    queued tasks to agents that report a free slot (:mod:`dodoor.sim.rebalance`),
    ``none`` never moves a task; rebalance_min_queue: how many tasks must be queued
    on a node, by the store's view, before the store moves one away."""

    delay_ms: float = 0.5
    report_interval_ms: float = 100.0
    schedulers: int = 1
    seed: int = 0
    policy: PolicySettings = field(default_factory=PolicySettings)
    util_points: int = 200
    lookahead: bool = True
    start_overhead_ms: float = 0.0
    estimate_sigma: float = 0.0
    bursts: Bursts | None = None
    rebalance: str = "none"
    rebalance_min_queue: int = 2
    aging_ms: float = DEFAULT_AGING_MS
    preempt: bool = False
    fallback: PackingSettings | None = None
    warm_start_overhead_ms: float | None = None
    warm_per_image: int = 2
    warm_idle_ms: float = 60_000.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delay_ms) and self.delay_ms >= 0):
            raise ValidationError("delay_ms", f"must be finite and >= 0, got {self.delay_ms}")
        if not (math.isfinite(self.report_interval_ms) and self.report_interval_ms >= 0):
            raise ValidationError(
                "report_interval_ms", f"must be finite and >= 0, got {self.report_interval_ms}"
            )
        if not (math.isfinite(self.start_overhead_ms) and self.start_overhead_ms >= 0):
            raise ValidationError("start_overhead_ms",
                                  f"must be finite and >= 0, got {self.start_overhead_ms}")
        if not self.aging_ms >= 0:
            raise ValidationError("aging_ms", f"must be >= 0, got {self.aging_ms}")
        if self.warm_start_overhead_ms is not None and not (
                math.isfinite(self.warm_start_overhead_ms) and self.warm_start_overhead_ms >= 0):
            raise ValidationError("warm_start_overhead_ms",
                                  f"must be finite and >= 0, got {self.warm_start_overhead_ms}")
        if self.warm_per_image < 0:
            raise ValidationError("warm_per_image", f"must be >= 0, got {self.warm_per_image}")
        if not (math.isfinite(self.warm_idle_ms) and self.warm_idle_ms > 0):
            raise ValidationError("warm_idle_ms", f"must be finite and > 0, got {self.warm_idle_ms}")
        if self.schedulers < 1:
            raise ValidationError("schedulers", f"must be >= 1, got {self.schedulers}")
        check_sigma(self.estimate_sigma)
        if self.rebalance not in REBALANCE_MODES:
            raise ValidationError("rebalance", f"must be one of {', '.join(REBALANCE_MODES)}, "
                                               f"got {self.rebalance!r}")
        if self.rebalance_min_queue < 1:
            raise ValidationError("rebalance_min_queue",
                                  f"must be >= 1, got {self.rebalance_min_queue}")
        if self.util_points < 2:
            raise ValidationError("util_points", f"must be >= 2, got {self.util_points}")
