"""``dodoor scheduler``: flags + env → settings → serve."""

from __future__ import annotations

import argparse
import os
from typing import Mapping

from dodoor.service.auth_token import add_token_arguments, token_from_args
from dodoor.service.cliargs import add_setting_flags, setting_values
from scheduler.settings import SchedulerSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scheduler`` command."""
    sp = subparsers.add_parser(
        "scheduler", help="run a scheduler daemon",
        description="Serve POST /v1/tasks: place each task on an agent with the --policy, "
                    "from the load store's snapshots (docs/daemons.md). Runs until SIGTERM.")
    add_setting_flags(sp, SchedulerSettings)
    add_token_arguments(sp)
    sp.set_defaults(func=run_scheduler)


def scheduler_settings(args: argparse.Namespace,
                       environ: Mapping[str, str] | None = None) -> SchedulerSettings:
    """The scheduler's settings, built once from its flags and the environment."""
    env = os.environ if environ is None else environ
    return SchedulerSettings(**setting_values(SchedulerSettings, args),
                             token=token_from_args(args, env))


def run_scheduler(args: argparse.Namespace) -> int:
    from scheduler.app import create_app
    from dodoor.service.http import run

    settings = scheduler_settings(args)
    run(create_app(settings), settings.host, settings.port)
    return 0
