"""``dodoor agent``: flags and environment → AgentSettings → a running daemon."""

from __future__ import annotations

import argparse
import logging
import math
import os

from dodoor.service.cliargs import MAX_PORT, bounded
from dodoor.service.auth_token import add_token_arguments, token_from_args
from dodoor.errors import ValidationError
from node_agent.settings import (DEFAULT_JOURNAL_RETENTION_S, EXECUTORS, AgentSettings,
                                 host_capacity)

log = logging.getLogger(__name__)
RETENTION_ENV = "DODOOR_JOURNAL_RETENTION_S"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "agent", help="run a node agent (queue, executor, journal)",
        description="Run one node: accept tasks from schedulers, queue them (FIFO with "
                    "backfill), run them with the --executor, journal every transition, and "
                    "report load to the load store (docs/agent.md). Runs until SIGTERM.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=bounded(int, 1, MAX_PORT), default=8200,
                   help="port to listen on")
    p.add_argument("--id", dest="node_id", default="node-0",
                   help="this node's id, unique in the cluster")
    p.add_argument("--loadstore", required=True, help="load store base URL")
    p.add_argument("--advertise-url", default=None,
                   help="URL schedulers use to reach this agent (default http://HOST:PORT)")
    p.add_argument("--cores", type=float, default=None, help="default: the host's CPU count")
    p.add_argument("--memory-mb", type=float, default=None, help="default: the host's total memory")
    p.add_argument("--disk-mb", type=float, default=None,
                   help="default: free space on the journal's filesystem")
    p.add_argument("--slots", type=bounded(int, 1), default=None,
                   help="concurrent tasks (default: cores)")
    p.add_argument("--executor", choices=EXECUTORS, default="sleep",
                   help="sleep: hold the task's resources for its duration; process: run its "
                        "command here; docker: run it in a container")
    p.add_argument("--journal", default=None, help="sqlite journal (default ./dodoor-agent-ID.sqlite)")
    p.add_argument("--journal-keep-finished", type=bounded(int, 0), default=0, metavar="N",
                   help="keep only the newest N finished results in the journal (default 0: all)")
    p.add_argument("--journal-retention-s", type=float, default=None, metavar="S",
                   help=f"forget finished results S seconds after they end (0: never; default "
                        f"${RETENTION_ENV} or {DEFAULT_JOURNAL_RETENTION_S:g}, 7 days)")
    p.add_argument("--report-interval-ms", type=float, default=100.0,
                   help="least time between two load reports to the load store")
    p.add_argument("--heartbeat-ms", type=float, default=1000.0,
                   help="a report at least this often, even with nothing new")
    p.add_argument("--sleep-scale", type=float, default=1.0,
                   help="sleep executor: multiply every duration (replay traces faster)")
    p.add_argument("--task-timeout-ms", type=float, default=None,
                   help="process executor: wall limit (default max(60 s, 10 × duration))")
    p.add_argument("--docker-network", default=None,
                   help="docker executor: network for task containers (default none)")
    p.add_argument("--docker-allow-image", action="append", default=[], metavar="IMAGE",
                   help="docker executor: an image tasks may use (repeatable; default the built task images)")
    p.add_argument("--docker-warm-image", action="append", default=[], metavar="IMAGE",
                   help="docker executor: keep warm containers for this image's tasks (repeatable; "
                        "a task label warm=true/false opts in or out; default none); docs/docker.md")
    p.add_argument("--docker-warm-per-image", type=bounded(int, 0), default=2,
                   help="docker executor: idle warm containers kept per image (default 2)")
    p.add_argument("--docker-warm-idle-s", type=float, default=60.0,
                   help="docker executor: a warm container idle this long is removed (default 60)")
    p.add_argument("--max-body-bytes", type=bounded(int, 1), default=4 * 1024 * 1024,
                   help="largest request body accepted (413 above)")
    add_token_arguments(p)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> AgentSettings:
    """Build the one settings object; unspecified capacity comes from this host."""
    journal = args.journal or f"dodoor-agent-{args.node_id}.sqlite"
    host = None
    if None in (args.cores, args.memory_mb, args.disk_mb):
        host = host_capacity(journal)
    cores = args.cores if args.cores is not None else host.cores  # type: ignore[union-attr]
    return AgentSettings(
        node_id=args.node_id, host=args.host, port=args.port, loadstore_url=args.loadstore,
        advertise_url=args.advertise_url, cores=cores,
        memory_mb=args.memory_mb if args.memory_mb is not None else host.memory_mb,  # type: ignore[union-attr]
        disk_mb=args.disk_mb if args.disk_mb is not None else host.disk_mb,  # type: ignore[union-attr]
        slots=args.slots if args.slots is not None else max(1, int(cores)),
        executor=args.executor, journal_path=journal,
        report_interval_ms=args.report_interval_ms, heartbeat_ms=args.heartbeat_ms,
        token=token_from_args(args),
        max_body_bytes=args.max_body_bytes, sleep_scale=args.sleep_scale,
        task_timeout_ms=args.task_timeout_ms, docker_network=args.docker_network,
        journal_keep_finished=args.journal_keep_finished,
        journal_retention_s=journal_retention_s(args),
        docker_allowed_images=tuple(args.docker_allow_image),
        docker_warm_images=tuple(args.docker_warm_image),
        docker_warm_per_image=args.docker_warm_per_image, docker_warm_idle_s=args.docker_warm_idle_s,
    )


def journal_retention_s(args: argparse.Namespace) -> float:
    """``--journal-retention-s``, else ``$DODOOR_JOURNAL_RETENTION_S``, else 7 days.

    A bad value is an error naming the flag or variable it came from.
    """
    if args.journal_retention_s is not None:
        source, value = "--journal-retention-s", float(args.journal_retention_s)
    else:
        raw = os.environ.get(RETENTION_ENV, "").strip()
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
