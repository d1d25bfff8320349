"""``dodoor scheduler`` and ``dodoor loadstore``: flags + env → settings → serve."""

from __future__ import annotations

import argparse

from dodoor.service.cliargs import MAX_PORT, bounded
from dodoor.service.auth_token import add_token_arguments, token_from_args
from dodoor.errors import ValidationError
from dodoor.policies import DEFAULT_POLICY, LIVE_POLICIES
from dodoor.settings import PolicySettings
from scheduler.settings import DEFAULT_MAX_BODY, LoadStoreSettings, SchedulerSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scheduler`` and ``loadstore`` commands."""
    sp = subparsers.add_parser(
        "scheduler", help="run a scheduler daemon",
        description="Serve POST /v1/tasks: place each task on an agent with the --policy, "
                    "from the load store's snapshots (docs/daemons.md). Runs until SIGTERM.")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sp.add_argument("--port", type=bounded(int, 1, MAX_PORT), default=8100,
                    help="port to listen on")
    sp.add_argument("--id", dest="scheduler_id", default="sched-0",
                    help="this scheduler's id, unique in the cluster")
    sp.add_argument("--loadstore", required=True, help="load store URL, e.g. http://127.0.0.1:8090")
    sp.add_argument("--advertise-url", default=None,
                    help="URL agents and the load store use to reach this scheduler "
                         "(default http://HOST:PORT)")
    sp.add_argument("--policy", default=DEFAULT_POLICY, metavar="SPEC",
                    help=f"{', '.join(LIVE_POLICIES)}, optionally with settings as "
                         f"name:key=value,... (default {DEFAULT_POLICY}; dodoor is the paper's)")
    sp.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="policy setting (d, beta, alpha, k, b, weights, ...); repeatable")
    sp.add_argument("--max-body-bytes", type=bounded(int, 1), default=DEFAULT_MAX_BODY,
                    help="largest request body accepted (413 above)")
    sp.add_argument("--seed", type=int, default=None,
                    help="seed of the policy's random choices (default: from the OS)")
    add_token_arguments(sp)
    sp.add_argument("--agent-timeout-ms", type=float, default=SchedulerSettings.agent_timeout_ms,
                    help="timeout of one request to an agent (default %(default)g)")
    sp.add_argument("--resolve-timeout-ms", type=float,
                    default=SchedulerSettings.resolve_timeout_ms,
                    help="how long an enqueue with an unknown outcome (a timeout) is resent to "
                         "the same agent before the task is reported as unknown, never placed "
                         "elsewhere (default %(default)g)")
    sp.set_defaults(func=run_scheduler)

    lp = subparsers.add_parser(
        "loadstore", help="run the load store daemon",
        description="Collect the agents' load reports and push snapshots of every node's load "
                    "to the schedulers every --b placements; keep membership and the task "
                    "index (docs/daemons.md). Runs until SIGTERM.")
    lp.add_argument("--host", default="127.0.0.1", help="address to listen on")
    lp.add_argument("--port", type=bounded(int, 1, MAX_PORT), default=8090,
                    help="port to listen on")
    lp.add_argument("--b", type=bounded(int, 1), default=80,
                    help="placements (by all schedulers) per snapshot push")
    lp.add_argument("--dead-after-ms", type=float, default=3000.0,
                    help="a node silent this long is declared dead and its tasks lost")
    add_token_arguments(lp)
    lp.add_argument("--adaptive-b-target-ms", type=float, default=0.0,
                    help="> 0: adapt b to hold the mean snapshot age near this (docs/beyond.md)")
    lp.add_argument("--delta-snapshots", action="store_true",
                    help="push each scheduler only the rows changed since its last snapshot")
    lp.add_argument("--state-file", default="dodoor-loadstore.json",
                    help="members and fenced node lives, kept across restarts "
                         "(docs/guarantees.md); '' keeps them in memory only (default "
                         "%(default)s)")
    lp.add_argument("--index-entries", type=bounded(int, 1), default=1_000_000,
                    help="task ids the store remembers for lookups and claims")
    lp.add_argument("--claim-ttl-ms", type=float, default=60_000.0,
                    help="how long an unreported claim keeps other schedulers off an id")
    lp.set_defaults(func=run_loadstore)


def parse_params(items: list[str]) -> PolicySettings:
    """``["d=8", "alpha=0.3"]`` → PolicySettings."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError("param", f"expected KEY=VALUE, got {item!r}")
        values[key.strip()] = value.strip()
    return PolicySettings.from_mapping(values)


def _token(args: argparse.Namespace) -> str | None:
    return token_from_args(args)


def scheduler_settings(args: argparse.Namespace) -> SchedulerSettings:
    return SchedulerSettings(
        scheduler_id=args.scheduler_id, host=args.host, port=args.port,
        loadstore_url=args.loadstore, advertise_url=args.advertise_url, policy=args.policy,
        policy_settings=parse_params(args.param), max_body_bytes=args.max_body_bytes,
        seed=args.seed, token=_token(args),
        agent_timeout_ms=args.agent_timeout_ms, resolve_timeout_ms=args.resolve_timeout_ms,
    )


def loadstore_settings(args: argparse.Namespace) -> LoadStoreSettings:
    return LoadStoreSettings(host=args.host, port=args.port, b=args.b,
                             dead_after_ms=args.dead_after_ms, token=_token(args),
                             adaptive_b_target_ms=getattr(args, "adaptive_b_target_ms", 0.0),
                             delta_snapshots=getattr(args, "delta_snapshots", False),
                             state_file=getattr(args, "state_file", ""),
                             index_entries=getattr(args, "index_entries", 1_000_000),
                             claim_ttl_ms=getattr(args, "claim_ttl_ms", 60_000.0))


def run_scheduler(args: argparse.Namespace) -> int:
    from scheduler.app import create_app
    from dodoor.service.http import run

    settings = scheduler_settings(args)
    run(create_app(settings), settings.host, settings.port)
    return 0


def run_loadstore(args: argparse.Namespace) -> int:
    from dodoor.service.http import run
    from scheduler.loadstore.app import create_app

    settings = loadstore_settings(args)
    run(create_app(settings), settings.host, settings.port)
    return 0
