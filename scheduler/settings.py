"""Typed settings of the scheduler and load-store processes, built once at the entry point."""

from __future__ import annotations

from dataclasses import dataclass, field

from dodoor.errors import ValidationError
from dodoor.policies import LIVE_POLICIES, is_live_spec, make_policy_spec
from dodoor.settings import PolicySettings

DEFAULT_MAX_BODY = 8 * 1024 * 1024


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValidationError(name, f"must be > 0, got {value!r}")


@dataclass(frozen=True)
class SchedulerSettings:
    """Everything one scheduler process needs; see ``dodoor scheduler --help``.

    ``advertise_url`` is where agents and the load store reach this scheduler
    (snapshot pushes, Sparrow confirms); it defaults to ``http://host:port``.
    """

    scheduler_id: str = "sched-0"
    host: str = "127.0.0.1"
    port: int = 8100
    loadstore_url: str = "http://127.0.0.1:8090"
    advertise_url: str | None = None
    policy: str = "dodoor"
    policy_settings: PolicySettings = field(default_factory=PolicySettings)
    max_body_bytes: int = DEFAULT_MAX_BODY
    seed: int | None = None
    token: str | None = None
    agent_timeout_ms: float = 2000.0
    # Extra nodes tried after every candidate failed (docs/design.md §6 failover).
    max_failover: int = 4
    idempotency_entries: int = 200_000
    max_batch: int = 10_000
    loadstore_check_ms: float = 1000.0
    register_retry_ms: float = 200.0
    sparrow_wait_ms: float = 200.0
    max_probe_inflight: int = 64
    max_connections: int = 256
    # Enqueue requests in flight per agent; more wait here instead of timing
    # out in the agent's queue (a timed-out enqueue may still have been accepted).
    agent_inflight: int = 8
    # How long an enqueue whose outcome is unknown (a timeout: the agent may have
    # journaled the task) is resent to the same agent before the task is reported
    # as "outcome unknown"; it is not placed elsewhere, where it could run twice.
    resolve_timeout_ms: float = 30_000.0
    # Send a batch's tasks for one agent in one request (falls back to single
    # enqueues for agents that answer 404/405 to /internal/enqueue_batch).
    batch_enqueue: bool = True

    def __post_init__(self) -> None:
        if not is_live_spec(self.policy):
            raise ValidationError(
                "policy", f"unknown or simulator-only policy {self.policy!r}; "
                f"live policies: {', '.join(LIVE_POLICIES)} (optionally name:key=value,...)"
            )
        make_policy_spec(self.policy, self.policy_settings)  # a bad setting fails here, named
        if not self.scheduler_id:
            raise ValidationError("id", "must not be empty")
        for name in ("max_body_bytes", "agent_timeout_ms", "idempotency_entries", "max_batch",
                     "loadstore_check_ms", "register_retry_ms", "max_connections",
                     "agent_inflight"):
            _positive(name, getattr(self, name))
        if self.max_failover < 0:
            raise ValidationError("max_failover", f"must be >= 0, got {self.max_failover}")
        if not self.resolve_timeout_ms >= 0:  # 0: report an unknown outcome at once
            raise ValidationError("resolve_timeout_ms",
                                  f"must be >= 0, got {self.resolve_timeout_ms!r}")

    @property
    def url(self) -> str:
        """The URL other components use to reach this scheduler."""
        return (self.advertise_url or f"http://{self.host}:{self.port}").rstrip("/")


@dataclass(frozen=True)
class LoadStoreSettings:
    """Everything one load-store process needs; see ``dodoor loadstore --help``."""

    host: str = "127.0.0.1"
    port: int = 8090
    b: int = 80
    dead_after_ms: float = 3000.0
    token: str | None = None
    push_timeout_ms: float = 2000.0
    # A scheduler that failed this many pushes in a row is forgotten; it
    # re-registers when it notices the load store again.
    forget_after_failures: int = 100
    max_body_bytes: int = 64 * 1024 * 1024
    # > 0: b adapts to the placement rate to hold snapshot age near this (dodoor.snapshots)
    adaptive_b_target_ms: float = 0.0
    # push each scheduler only the rows changed since its previous snapshot
    delta_snapshots: bool = False
    # members and fenced node lives (scheduler.loadstore.membership); "" keeps them in memory only
    state_file: str = ""
    index_entries: int = 1_000_000  # task ids the store remembers (docs/guarantees.md)
    # a claim without a reporting node keeps other schedulers off the id this long
    claim_ttl_ms: float = 60_000.0

    def __post_init__(self) -> None:
        if self.b < 1:
            raise ValidationError("b", f"must be >= 1, got {self.b}")
        for name in ("dead_after_ms", "push_timeout_ms", "forget_after_failures",
                     "max_body_bytes", "index_entries", "claim_ttl_ms"):
            _positive(name, getattr(self, name))

    @property
    def expiry_interval_ms(self) -> float:
        """How often dead nodes are looked for: a quarter of the deadline, at most 500 ms."""
        return min(self.dead_after_ms / 4.0, 500.0)
