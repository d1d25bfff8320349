"""Typed settings of the load-store process, built once at the entry point.

The fields made with :func:`~dodoor.service.cliargs.setting` are the flags of
``dodoor loadstore`` (scheduler/loadstore/command.py derives them).
"""

from __future__ import annotations

from dataclasses import dataclass

from dodoor.errors import ValidationError
from dodoor.service.cliargs import MAX_PORT, bounded, setting
from dodoor.settings import PolicySettings, check_positive


@dataclass(frozen=True)
class LoadStoreSettings:
    """Everything one load-store process needs; see ``dodoor loadstore --help``."""

    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8090, "port to listen on", type=bounded(int, 1, MAX_PORT))
    b: int = setting(PolicySettings.b, "placements (by all schedulers) per snapshot push",
                     type=bounded(int, 1))
    dead_after_ms: float = setting(
        3000.0, "a node silent this long is declared dead and its tasks lost")
    # b-counted pushes follow placements; this one follows reports, so a view that a
    # report corrected (a placement it hid, tasks that ended) is not kept while idle
    refresh_ms: float = setting(
        1000.0, "push a snapshot when reports changed the nodes' state and none went out "
                "for this long; 0: only every b placements (default %(default)s)")
    token: str | None = None
    push_timeout_ms: float = 2000.0
    # A scheduler that failed this many pushes in a row is forgotten; it
    # re-registers when it notices the load store again.
    forget_after_failures: int = 100
    max_body_bytes: int = 64 * 1024 * 1024
    # > 0: b adapts to the placement rate to hold snapshot age near this (dodoor.snapshots)
    adaptive_b_target_ms: float = setting(
        0.0, "> 0: adapt b to hold the mean snapshot age near this (docs/beyond.md)")
    delta_snapshots: bool = setting(
        False, "push each scheduler only the rows changed since its last snapshot")
    # members and fenced node lives (scheduler.loadstore.membership); "" keeps them in memory only
    state_file: str = setting(
        "", "members and fenced node lives, kept across restarts (docs/guarantees.md); '' "
            "keeps them in memory only (default %(default)s)",
        cli_default="dodoor-loadstore.json")
    index_entries: int = setting(  # docs/guarantees.md
        1_000_000, "task ids the store remembers for lookups and claims", type=bounded(int, 1))
    claim_ttl_ms: float = setting(
        60_000.0, "how long an unreported claim keeps other schedulers off an id")
    # rebalancing queued work (scheduler.loadstore.rebalance; docs/simulator.md)
    rebalance: bool = setting(
        False, "move queued tasks to agents whose report shows a free slot")
    rebalance_min_queue: int = setting(
        2, "with --rebalance: take only from nodes with at least this many tasks queued "
           "beyond their slots", type=bounded(int, 1))
    # a move must save more than it costs in flight: the order and the enqueue
    rebalance_least_wait_ms: float = 10.0

    def __post_init__(self) -> None:
        if self.b < 1:
            raise ValidationError("b", f"must be >= 1, got {self.b}")
        check_positive(self, ("dead_after_ms", "push_timeout_ms", "forget_after_failures",
                              "max_body_bytes", "index_entries", "claim_ttl_ms",
                              "rebalance_min_queue"))
        if not self.refresh_ms >= 0:  # NaN too
            raise ValidationError("refresh_ms", f"must be >= 0, got {self.refresh_ms}")
        if self.rebalance_least_wait_ms < 0:
            raise ValidationError("rebalance_least_wait_ms",
                                  f"must be >= 0, got {self.rebalance_least_wait_ms}")

    @property
    def expiry_interval_ms(self) -> float:
        """How often dead nodes are looked for: a quarter of the deadline, at most 500 ms."""
        return min(self.dead_after_ms / 4.0, 500.0)
