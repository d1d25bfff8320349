"""``dodoor scheduler``: flags + env → settings → serve."""

from __future__ import annotations

import argparse
from typing import Mapping

from dodoor.service.cliargs import daemon_parser, daemon_settings
from scheduler.settings import SchedulerSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scheduler`` command."""
    daemon_parser(
        subparsers, "scheduler", SchedulerSettings, run_scheduler, help="run a scheduler daemon",
        description="Serve POST /v1/tasks: place each task on an agent with the --policy, "
                    "from the load store's snapshots (docs/daemons.md). Runs until SIGTERM.")


def scheduler_settings(args: argparse.Namespace,
                       environ: Mapping[str, str] | None = None) -> SchedulerSettings:
    """The scheduler's settings, built once from its flags and the environment."""
    return daemon_settings(SchedulerSettings, args, environ)


def run_scheduler(args: argparse.Namespace) -> int:
    from scheduler.app import create_app
    from dodoor.service.http import run

    settings = scheduler_settings(args)
    run(create_app(settings), settings.host, settings.port)
    return 0
