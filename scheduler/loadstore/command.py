"""``dodoor loadstore``: flags + env → settings → serve."""

from __future__ import annotations

import argparse
import os
from typing import Mapping

from dodoor.service.auth_token import add_token_arguments, token_from_args
from dodoor.service.cliargs import add_setting_flags, setting_values
from scheduler.loadstore.settings import LoadStoreSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``loadstore`` command."""
    lp = subparsers.add_parser(
        "loadstore", help="run the load store daemon",
        description="Collect the agents' load reports and push snapshots of every node's load "
                    "to the schedulers every --b placements; keep membership and the task "
                    "index (docs/daemons.md). Runs until SIGTERM.")
    add_setting_flags(lp, LoadStoreSettings)
    add_token_arguments(lp)
    lp.set_defaults(func=run_loadstore)


def loadstore_settings(args: argparse.Namespace,
                       environ: Mapping[str, str] | None = None) -> LoadStoreSettings:
    """The load store's settings, built once from its flags and the environment."""
    env = os.environ if environ is None else environ
    return LoadStoreSettings(**setting_values(LoadStoreSettings, args),
                             token=token_from_args(args, env))


def run_loadstore(args: argparse.Namespace) -> int:
    from dodoor.service.http import run
    from scheduler.loadstore.app import create_app

    settings = loadstore_settings(args)
    run(create_app(settings), settings.host, settings.port)
    return 0
