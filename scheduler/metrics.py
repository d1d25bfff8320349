"""The scheduler's ``/metrics`` (docs/operations.md explains each one).

Counters and gauges are read from the live placer and view at scrape time; the
two submit histograms are filled on the submit path by :meth:`SubmitMetrics.submitted`,
once per request (a batch of n tasks is n observations in one call); the packing
fallback's are kept by :class:`scheduler.fallback.FallbackStats`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from dodoor.service.metrics import (LATENCY_BUCKETS, SNAPSHOT_AGE_BUCKETS, CounterCollector,
                            GaugeCollector, Histogram, MessageCollector, daemon_registry)
from scheduler.fallback import FallbackStats
from scheduler.placements import Placement

if TYPE_CHECKING:  # the app imports this module
    from scheduler.app import SchedulerState


class SubmitMetrics:
    """What the submit handler observes: latency and snapshot age per placed task."""

    def __init__(self) -> None:
        self.submit_to_placed = Histogram(LATENCY_BUCKETS)
        self.snapshot_age_at_use = Histogram(SNAPSHOT_AGE_BUCKETS)
        self.unplaced = 0

    def submitted(self, placements: Sequence[Placement], elapsed_s: float,
                  snapshot_age_ms: float | None) -> None:
        """One submission answered after ``elapsed_s``; its decisions started on a
        snapshot ``snapshot_age_ms`` old (None: no snapshot yet)."""
        placed = sum(1 for p in placements if p.node is not None)
        self.unplaced += len(placements) - placed
        if not placed:
            return
        self.submit_to_placed.observe(elapsed_s, placed)
        # Observed only when tasks are placed: an idle cluster adds nothing, so an
        # alert on this histogram's quantiles cannot fire just because nothing happens.
        if snapshot_age_ms is not None:
            self.snapshot_age_at_use.observe(snapshot_age_ms / 1000.0, placed)


class _Histograms(Collector):
    def __init__(self, metrics: SubmitMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield self.metrics.submit_to_placed.family(
            "dodoor_scheduler_submit_to_placed_seconds",
            "From a submission's arrival to its tasks' enqueue on agents, per placed task")
        yield self.metrics.snapshot_age_at_use.family(
            "dodoor_scheduler_snapshot_age_at_use_seconds",
            "Age of the load store snapshot a placement decided on, per placed task")


class _Fallback(Collector):
    """The packing fallback's calls, solver seconds and outcomes (docs/operations.md)."""

    def __init__(self, state: SchedulerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        placer = self.state.placer
        # before the placer is built nothing was counted
        stats = placer.fallback_stats if placer is not None else FallbackStats()
        yield CounterMetricFamily("dodoor_scheduler_fallback_calls",
                                  "Packing fallback solver calls (one per window of tasks)",
                                  value=stats.calls)
        outcomes = CounterMetricFamily(
            "dodoor_scheduler_fallback_tasks",
            "Tasks the packing fallback decided, by outcome: placed (on the solver's node), "
            "proven_none (no node has room, proven), timeout (none found in the time limit), "
            "move_failed (its node's room needed a move that failed)",
            labels=["outcome"])
        for outcome in ("placed", "proven_none", "timeout", "move_failed"):
            outcomes.add_metric([outcome], getattr(stats, outcome))
        yield outcomes
        yield CounterMetricFamily(
            "dodoor_scheduler_fallback_moves_proposed",
            "Moves of queued lower-class tasks the packing fallback proposed",
            value=stats.moves_proposed)
        moves = CounterMetricFamily(
            "dodoor_scheduler_fallback_moves",
            "The fallback's move orders by outcome: done (the task left for its target), "
            "failed (it started meanwhile, the target refused, or no answer)",
            labels=["outcome"])
        moves.add_metric(["done"], stats.moves_done)
        moves.add_metric(["failed"], stats.moves_failed)
        yield moves
        yield stats.seconds.family(
            "dodoor_scheduler_fallback_solve_seconds",
            "Time of one packing fallback call in its thread: node selection, model, search")


def make_registry(state: SchedulerState) -> CollectorRegistry:
    """The scheduler app's registry: process metrics, messages, counters, gauges, histograms."""

    def placer_count(attr: str):
        # the placer is built in the app's cleanup_ctx: before that, nothing was counted
        return lambda: getattr(state.placer, attr) if state.placer is not None else 0

    def snapshot_age_s() -> float | None:
        age = state.view.age_ms(state.clock.now_ms())
        return None if age is None else age / 1000.0

    counters = CounterCollector({
        "dodoor_scheduler_placements_total": ("Tasks placed (enqueued on an agent that took them)",
                                              placer_count("placements")),
        "dodoor_scheduler_failovers_total": ("Enqueues refused by an agent and moved to another "
                                             "node", placer_count("failovers")),
        "dodoor_scheduler_resolves_total": ("Enqueues with an unknown outcome asked again of the "
                                            "same agent", placer_count("resolves")),
        "dodoor_scheduler_confirms_total": ("Resubmitted ids confirmed by the node holding them",
                                            placer_count("confirms")),
        "dodoor_scheduler_claims_skipped_total": (
            "Submissions placed without a cluster-wide claim (load store unreachable or the "
            "claim of ids made here failed)",
            lambda: state.placer.claims.skipped if state.placer is not None else 0),
        "dodoor_scheduler_unplaced_total": (
            "Submitted tasks answered without a node (503 or 409 for them)",
            lambda: state.metrics.unplaced),
    })
    gauges = GaugeCollector({
        "dodoor_scheduler_nodes": ("Live nodes in the cached view", lambda: state.view.n_nodes),
        "dodoor_scheduler_dead_nodes": ("Nodes the load store declared dead (their tasks are "
                                        "lost)", lambda: len(state.view.dead)),
        "dodoor_scheduler_degraded": ("1 while the load store is unreachable or no snapshot "
                                      "came yet", lambda: state.health()["status"] == "degraded"),
        "dodoor_scheduler_loadstore_reachable": ("1 while the load store answers",
                                                 lambda: state.loadstore_reachable),
        # Snapshots come every b placements cluster-wide, so on an idle cluster this
        # grows without bound by design: for dashboards, not alerts (docs/operations.md).
        "dodoor_scheduler_snapshot_age_seconds": (
            "Seconds since the last snapshot; grows while nothing is placed and nothing "
            "changes (absent before the first)", snapshot_age_s),
    })
    return daemon_registry(MessageCollector(state.counter), counters, gauges,
                           _Histograms(state.metrics), _Fallback(state))
