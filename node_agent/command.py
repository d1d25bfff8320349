"""``dodoor agent``: flags and environment → AgentSettings → a running daemon."""

from __future__ import annotations

import argparse
import logging
import math
import os
from typing import Mapping

from dodoor.service.cliargs import daemon_parser, daemon_settings
from dodoor.errors import ValidationError
from node_agent.settings import (DEFAULT_JOURNAL_RETENTION_S, RETENTION_ENV, AgentSettings,
                                 host_capacity)

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    daemon_parser(
        subparsers, "agent", AgentSettings, run,
        help="run a node agent (queue, executor, journal)",
        description="Run one node: accept tasks from schedulers, queue them (FIFO with "
                    "backfill), run them with the --executor, journal every transition, and "
                    "report load to the load store (docs/agent.md). Runs until SIGTERM.")


def settings_from_args(args: argparse.Namespace,
                       environ: Mapping[str, str] | None = None) -> AgentSettings:
    """Build the one settings object from the flags and the environment (read here
    only); unspecified capacity comes from this host."""
    env = os.environ if environ is None else environ
    journal = args.journal_path or f"dodoor-agent-{args.node_id}.sqlite"
    measured = {"journal_path": journal, "journal_retention_s": journal_retention_s(args, env)}
    if None in (args.cores, args.memory_mb, args.disk_mb):
        host = host_capacity(journal)
        measured.update((name, getattr(host, name)) for name in ("cores", "memory_mb", "disk_mb")
                        if getattr(args, name) is None)
    if args.slots is None:
        measured["slots"] = max(1, int(args.cores if args.cores is not None
                                       else measured["cores"]))
    return daemon_settings(AgentSettings, args, env, **measured)


def journal_retention_s(args: argparse.Namespace, environ: Mapping[str, str]) -> float:
    """``--journal-retention-s``, else ``$DODOOR_JOURNAL_RETENTION_S``, else 7 days.

    A bad value is an error naming the flag or variable it came from.
    """
    if args.journal_retention_s is not None:
        source, value = "--journal-retention-s", float(args.journal_retention_s)
    else:
        raw = environ.get(RETENTION_ENV, "").strip()
        if not raw:
            return DEFAULT_JOURNAL_RETENTION_S
        source = f"${RETENTION_ENV}"
        try:
            value = float(raw)
        except ValueError as exc:
            raise ValidationError(source, f"must be a number of seconds, got {raw!r}") from exc
    if not (value >= 0 and math.isfinite(value)):
        raise ValidationError(source, f"must be a finite number of seconds >= 0 (0: keep forever),"
                                      f" got {value!r}")
    return value


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from dodoor.service.http import run as serve  # aiohttp only once the flags are good
    from node_agent.app import create_app

    log.info("agent %s starting on %s:%d (advertised as %s)", settings.node_id, settings.host,
             settings.port, settings.url)
    serve(create_app(settings), settings.host, settings.port)
    log.info("agent %s stopped", settings.node_id)
    return 0
