"""``dodoor scheduler``: flags + env → settings → serve."""

from __future__ import annotations

import argparse

from dodoor.service.cliargs import MAX_PORT, bounded
from dodoor.service.auth_token import add_token_arguments, token_from_args
from dodoor.errors import ValidationError
from dodoor.policies import DEFAULT_POLICY, LIVE_POLICIES
from dodoor.settings import PolicySettings
from scheduler.settings import DEFAULT_MAX_BODY, SchedulerSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scheduler`` command."""
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


def parse_params(items: list[str]) -> PolicySettings:
    """``["d=8", "alpha=0.3"]`` → PolicySettings."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError("param", f"expected KEY=VALUE, got {item!r}")
        values[key.strip()] = value.strip()
    return PolicySettings.from_mapping(values)


def scheduler_settings(args: argparse.Namespace) -> SchedulerSettings:
    return SchedulerSettings(
        scheduler_id=args.scheduler_id, host=args.host, port=args.port,
        loadstore_url=args.loadstore, advertise_url=args.advertise_url, policy=args.policy,
        policy_settings=parse_params(args.param), max_body_bytes=args.max_body_bytes,
        seed=args.seed, token=token_from_args(args),
        agent_timeout_ms=args.agent_timeout_ms, resolve_timeout_ms=args.resolve_timeout_ms,
    )


def run_scheduler(args: argparse.Namespace) -> int:
    from scheduler.app import create_app
    from dodoor.service.http import run

    settings = scheduler_settings(args)
    run(create_app(settings), settings.host, settings.port)
    return 0
