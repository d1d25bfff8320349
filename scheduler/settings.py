"""Typed settings of the scheduler process, built once at the entry point.

The fields made with :func:`~dodoor.service.cliargs.setting` are the flags of
``dodoor scheduler`` (scheduler/command.py derives them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dodoor.errors import ValidationError
from dodoor.packing import PackingSettings
from dodoor.policies import DEFAULT_POLICY, LIVE_POLICIES, PolicyKind, is_live_spec, make_policy_spec
from dodoor.service.cliargs import MAX_PORT, bounded, setting
from dodoor.settings import LOADSTORE_KEYS, PolicySettings, check_positive, key_values

DEFAULT_MAX_BODY = 8 * 1024 * 1024


def parse_params(items: Sequence[str]) -> PolicySettings:
    """``["d=8", "alpha=0.3"]`` → PolicySettings (``--param``)."""
    return PolicySettings.from_mapping(key_values(items, "param"))


@dataclass(frozen=True)
class SchedulerSettings:
    """Everything one scheduler process needs; see ``dodoor scheduler --help``.

    ``advertise_url`` is where agents and the load store reach this scheduler
    (snapshot pushes, Sparrow confirms); it defaults to ``http://host:port``.
    """

    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8100, "port to listen on", type=bounded(int, 1, MAX_PORT))
    scheduler_id: str = setting("sched-0", "this scheduler's id, unique in the cluster",
                                flag="--id")
    loadstore_url: str = setting("http://127.0.0.1:8090",
                                 "load store URL, e.g. http://127.0.0.1:8090",
                                 flag="--loadstore", required=True, cli_default=None,
                                 metavar="URL")
    advertise_url: str | None = setting(
        None, "URL agents and the load store use to reach this scheduler "
              "(default http://HOST:PORT)")
    policy: str = setting(
        DEFAULT_POLICY, f"{', '.join(LIVE_POLICIES)}, optionally with settings as "
                        f"name:key=value,... (default {DEFAULT_POLICY}; dodoor is the paper's)",
        metavar="SPEC")
    policy_settings: PolicySettings = setting(
        PolicySettings(), "policy setting (d, beta, alpha, k, weights, ...; b is the load "
                          "store's); repeatable", flag="--param", cli_default=[],
        action="append", metavar="KEY=VALUE", convert=parse_params)
    max_body_bytes: int = setting(DEFAULT_MAX_BODY, "largest request body accepted (413 above)",
                                  type=bounded(int, 1))
    seed: int | None = setting(None, "seed of the policy's random choices (default: from the OS)")
    token: str | None = None
    agent_timeout_ms: float = setting(2000.0, "timeout of one request to an agent")
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
    resolve_timeout_ms: float = setting(
        30_000.0, "how long an enqueue with an unknown outcome (a timeout) is resent to the "
                  "same agent before the task is reported as unknown, never placed elsewhere")
    # The packing fallback (docs/design.md §12, scheduler/fallback.py). Off by default:
    # a submission that needs it is answered only after its window and the solver
    # (up to fallback_window_ms + fallback_time_s later), a latency an operator should
    # choose, and it helps only clusters where large tasks meet fragmented room.
    fallback: bool = setting(
        False, "when no sampled candidate has room for a task, place it by an exact "
               "CP-SAT packing over the cached view (cache-based policies only)")
    fallback_time_s: float = setting(1.0, "the fallback solver's time limit per call",
                                     type=bounded(float, 0.001))
    fallback_window_ms: float = setting(
        10.0, "how long the fallback collects tasks for one solver call",
        type=bounded(float, 0.0))
    fallback_window_tasks: int = setting(16, "most tasks in one fallback solver call",
                                         type=bounded(int, 1))
    fallback_nodes: int = setting(64, "nodes with the most room the fallback model looks at",
                                  type=bounded(int, 1))
    # Send a batch's tasks for one agent in one request (falls back to single
    # enqueues for agents that answer 404/405 to /internal/enqueue_batch).
    batch_enqueue: bool = True

    def __post_init__(self) -> None:
        if not is_live_spec(self.policy):
            raise ValidationError(
                "policy", f"unknown or simulator-only policy {self.policy!r}; "
                f"live policies: {', '.join(LIVE_POLICIES)} (optionally name:key=value,...)"
            )
        # a bad setting fails here, named; so does one only the load store applies
        knobs = make_policy_spec(self.policy, self.policy_settings).settings
        stray = knobs.loadstore_keys_set()
        if stray:
            own = self.policy.partition(":")[2]
            in_spec = [k for k in key_values(own.split(","), "policy") if k in LOADSTORE_KEYS] \
                if own else []
            where, key = ("policy", in_spec[0]) if in_spec else ("param", stray[0])
            raise ValidationError(where, f"{key!r} does nothing at a scheduler: the load store "
                                  f"applies it; give it to `dodoor loadstore` (--b, "
                                  f"--adaptive-b-target-ms, --delta-snapshots) or to "
                                  f"`dodoor cluster up --b`")
        sim_only = [k for k in ("echo", "others") if getattr(knobs, k)]
        if sim_only:
            # herding variants measured in the simulator only (docs/evaluation.md,
            # "Herding"); accepting them would promise what the daemon does not do
            raise ValidationError(sim_only[0], "is simulator-only: the live scheduler's cache "
                                  "does not project other schedulers' placements; drop it")
        if not self.scheduler_id:
            raise ValidationError("id", "must not be empty")
        check_positive(self, ("max_body_bytes", "agent_timeout_ms", "idempotency_entries",
                              "max_batch", "loadstore_check_ms", "register_retry_ms",
                              "max_connections", "agent_inflight", "fallback_time_s",
                              "fallback_window_tasks", "fallback_nodes"))
        if self.fallback and make_policy_spec(self.policy, self.policy_settings).kind \
                is not PolicyKind.CACHED:
            raise ValidationError("fallback", f"needs a cache-based policy (its cached view is "
                                  f"what the solver packs), not {self.policy!r}")
        if not self.fallback_window_ms >= 0:
            raise ValidationError("fallback_window_ms",
                                  f"must be >= 0, got {self.fallback_window_ms!r}")
        self.packing  # a bad time limit, window or node count fails here, named
        if self.max_failover < 0:
            raise ValidationError("max_failover", f"must be >= 0, got {self.max_failover}")
        if not self.resolve_timeout_ms >= 0:  # 0: report an unknown outcome at once
            raise ValidationError("resolve_timeout_ms",
                                  f"must be >= 0, got {self.resolve_timeout_ms!r}")

    @property
    def packing(self) -> PackingSettings:
        """The fallback solver's settings (one worker: the machine serves placements too)."""
        try:
            return PackingSettings(time_limit_s=self.fallback_time_s,
                                   max_nodes=self.fallback_nodes,
                                   window=self.fallback_window_tasks, workers=1,
                                   seed=self.seed or 0)
        except ValueError as exc:
            raise ValidationError("fallback", str(exc)) from exc

    @property
    def url(self) -> str:
        """The URL other components use to reach this scheduler."""
        return (self.advertise_url or f"http://{self.host}:{self.port}").rstrip("/")
