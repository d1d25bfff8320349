"""``dodoor loadstore``: flags + env → settings → serve."""

from __future__ import annotations

import argparse
from typing import Mapping

from dodoor.service.cliargs import daemon_parser, daemon_settings
from scheduler.loadstore.settings import LoadStoreSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``loadstore`` command."""
    daemon_parser(
        subparsers, "loadstore", LoadStoreSettings, run_loadstore,
        help="run the load store daemon",
        description="Collect the agents' load reports and push snapshots of every node's load "
                    "to the schedulers every --b placements; keep membership and the task "
                    "index (docs/daemons.md). Runs until SIGTERM.")


def loadstore_settings(args: argparse.Namespace,
                       environ: Mapping[str, str] | None = None) -> LoadStoreSettings:
    """The load store's settings, built once from its flags and the environment."""
    return daemon_settings(LoadStoreSettings, args, environ)


def run_loadstore(args: argparse.Namespace) -> int:
    from dodoor.service.http import run
    from scheduler.loadstore.app import create_app

    settings = loadstore_settings(args)
    run(create_app(settings), settings.host, settings.port)
    return 0
