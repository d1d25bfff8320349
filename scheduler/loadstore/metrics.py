"""The load store's ``/metrics`` (docs/operations.md explains each one).

Everything is read at scrape time from the store and its pusher, so no number
has to be kept in step by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from dodoor.service.metrics import CounterCollector, GaugeCollector, MessageCollector, daemon_registry

if TYPE_CHECKING:  # the app imports this module
    from scheduler.loadstore.app import LoadStoreApp


def make_registry(ls: LoadStoreApp) -> CollectorRegistry:
    """The load-store app's registry: process metrics, messages, counters, gauges."""
    store, pusher = ls.store, ls.pusher
    counters = CounterCollector({
        "dodoor_loadstore_placements_total": ("Placements counted from the schedulers' deltas",
                                              lambda: store.placements),
        "dodoor_loadstore_push_failures_total": (
            "Snapshot pushes a scheduler did not take (unreachable, timed out, refused)",
            lambda: pusher.push_failures),
        # rebalancing (scheduler.loadstore.rebalance); zero when it is off
        "dodoor_loadstore_move_orders_total": (
            "Move orders sent to agents with a queue, for an agent with a free slot",
            lambda: ls.mover.orders if ls.mover else 0),
        "dodoor_loadstore_moves_total": ("Move orders that moved a queued task (202)",
                                         lambda: ls.mover.moves if ls.mover else 0),
        "dodoor_loadstore_move_misses_total": (
            "Move orders that found no queued task fitting the free room (204)",
            lambda: ls.mover.misses if ls.mover else 0),
        "dodoor_loadstore_move_failures_total": (
            "Move orders not answered, or refused, by their agent",
            lambda: ls.mover.failures if ls.mover else 0),
    })
    gauges = GaugeCollector({
        "dodoor_loadstore_live_nodes": ("Live nodes", lambda: len(store.live())),
        "dodoor_loadstore_dead_nodes": ("Nodes declared dead and not back",
                                        lambda: len(store.dead())),
        "dodoor_loadstore_schedulers": ("Registered schedulers", lambda: len(pusher.schedulers)),
        # was dodoor_loadstore_batch_b: "_b" reads as a unit (bytes) to promtool
        "dodoor_loadstore_placements_per_push": (
            "b: placements counted between two snapshot pushes (adapts when enabled)",
            lambda: store.b),
        "dodoor_loadstore_placements_since_push": (
            "Placements counted since the last snapshot push (a push is due at b)",
            lambda: store.since_push),
        "dodoor_loadstore_indexed_tasks": ("Task ids in the cluster-wide task index",
                                           lambda: len(store.index)),
        "dodoor_loadstore_degraded": (
            "1 while the membership file has unsaved changes (a restart would forget them)",
            lambda: store.membership_dirty),
    })
    return daemon_registry(MessageCollector(ls.counter), counters, gauges)
