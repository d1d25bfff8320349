"""``dodoor loadstore``: flags + env → settings → serve."""

from __future__ import annotations

import argparse

from dodoor.service.auth_token import add_token_arguments, token_from_args
from dodoor.service.cliargs import MAX_PORT, bounded
from scheduler.settings import LoadStoreSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``loadstore`` command."""
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


def loadstore_settings(args: argparse.Namespace) -> LoadStoreSettings:
    """The load store's settings, built once from its flags and the environment."""
    return LoadStoreSettings(host=args.host, port=args.port, b=args.b,
                             dead_after_ms=args.dead_after_ms, token=token_from_args(args),
                             adaptive_b_target_ms=getattr(args, "adaptive_b_target_ms", 0.0),
                             delta_snapshots=getattr(args, "delta_snapshots", False),
                             state_file=getattr(args, "state_file", ""),
                             index_entries=getattr(args, "index_entries", 1_000_000),
                             claim_ttl_ms=getattr(args, "claim_ttl_ms", 60_000.0))


def run_loadstore(args: argparse.Namespace) -> int:
    from dodoor.service.http import run
    from scheduler.loadstore.app import create_app

    settings = loadstore_settings(args)
    run(create_app(settings), settings.host, settings.port)
    return 0
