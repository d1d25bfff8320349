"""``dodoor cluster up`` (a local cluster of processes) and ``dodoor submit``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import aiohttp

from dodoor.errors import ValidationError
from dodoor.policies import DEFAULT_POLICY
from dodoor.resources import Task
from dodoor.validation import parse_task
from scheduler.localcluster import EXECUTORS, ClusterSettings, LocalCluster
from scheduler.submit import SubmitError, follow, submit


def register(subparsers: argparse._SubParsersAction) -> None:
    cluster = subparsers.add_parser("cluster", help="run a local cluster of processes")
    actions = cluster.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start a load store, schedulers and agents on 127.0.0.1")
    up.add_argument("--agents", type=int, default=6, help="agents (a scaled paper100 mix)")
    up.add_argument("--schedulers", type=int, default=2)
    up.add_argument("--executor", choices=EXECUTORS, default="sleep")
    up.add_argument("--base-port", type=int, default=8090,
                    help="load store on P, schedulers on P+10.., agents on P+100..")
    up.add_argument("--policy", default=DEFAULT_POLICY,
                    help=f"a live policy or spec (default {DEFAULT_POLICY})")
    up.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    up.add_argument("--workdir", type=Path, default=Path(".dodoor-cluster"),
                    help="journals and logs")
    up.set_defaults(func=_cluster_up)

    sub = subparsers.add_parser("submit", help="submit tasks and wait for them to finish")
    sub.add_argument("--url", required=True, help="scheduler URL(s), comma-separated")
    sub.add_argument("--trace", type=Path, help="submit every task of a trace file")
    sub.add_argument("--limit", type=int, help="only the first N tasks of the trace")
    sub.add_argument("--duration-scale", type=float, default=1.0,
                     help="multiply trace durations (e.g. 0.01 to run a 60-s trace quickly)")
    sub.add_argument("--cores", type=float, default=1.0)
    sub.add_argument("--memory-mb", type=int, default=256)
    sub.add_argument("--disk-mb", type=int, default=0)
    sub.add_argument("--duration-ms", type=float, default=1000.0)
    sub.add_argument("--image")
    sub.add_argument("--count", type=int, default=1, help="copies of the single task")
    sub.add_argument("--batch", type=int, default=100)
    sub.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
    sub.add_argument("command_argv", nargs=argparse.REMAINDER, metavar="-- CMD...")
    sub.set_defaults(func=_submit)


def _cluster_up(args: argparse.Namespace) -> int:
    settings = ClusterSettings(
        agents=args.agents, schedulers=args.schedulers, executor=args.executor,
        base_port=args.base_port, policy=args.policy, params=tuple(args.param),
        workdir=args.workdir, token=os.environ.get("DODOOR_TOKEN"),
    )
    cluster = LocalCluster(settings)
    # SIGTERM stops the cluster exactly like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cluster.start()
        print(f"load store: {cluster.loadstore_url}")
        for url in cluster.scheduler_urls:
            print(f"scheduler:  {url}")
        print(f"{len(cluster.agent_urls)} agents ({args.executor} executor); logs in {args.workdir}")
        print("Ctrl-C stops the cluster.", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        print("cluster stopped", file=sys.stderr)
    return 0


def _submit(args: argparse.Namespace) -> int:
    tasks = _tasks_from_args(args)
    urls = [u.strip().rstrip("/") for u in args.url.split(",") if u.strip()]
    return asyncio.run(_submit_and_follow(urls, tasks, args))


def _tasks_from_args(args: argparse.Namespace) -> list[Task]:
    if args.trace is not None:
        from workloads.registry import load_trace

        loaded = load_trace(args.trace, limit=args.limit)
        run_id = uuid.uuid4().hex[:8]
        return [
            parse_task({**t.to_dict(), "id": f"{run_id}-{t.task_id}",
                        "duration_ms": max(1.0, t.duration_ms * args.duration_scale)})
            for t in loaded
        ]
    command = [c for c in args.command_argv if c != "--"] or None
    body = {"cores": args.cores, "memory_mb": args.memory_mb, "disk_mb": args.disk_mb,
            "duration_ms": args.duration_ms}
    if command:
        body["command"] = command
    if args.image:
        body["image"] = args.image
    if args.count < 1:
        raise ValidationError("count", f"must be >= 1, got {args.count}")
    return [parse_task(body, make_id=lambda: uuid.uuid4().hex) for _ in range(args.count)]


async def _submit_and_follow(urls: list[str], tasks: list[Task], args: argparse.Namespace) -> int:
    token = os.environ.get("DODOOR_TOKEN")
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            placed = await submit(session, urls, tasks, batch_size=args.batch, token=token)
        except SubmitError as exc:
            print(f"dodoor submit: rejected: {exc}", file=sys.stderr)
            return 1
        except aiohttp.ClientError as exc:
            print(f"dodoor submit: cannot reach {', '.join(urls)}: {exc}", file=sys.stderr)
            return 1
        print(f"submitted {len(placed)} tasks", file=sys.stderr)
        final = await follow(session, placed, token=token, timeout_s=args.timeout)
    states: dict[str, int] = {}
    for s in final.values():
        states[s.get("state", "unknown")] = states.get(s.get("state", "unknown"), 0) + 1
    print("  ".join(f"{k}: {v}" for k, v in sorted(states.items())))
    if len(tasks) == 1:
        only = next(iter(final.values()))
        print({k: only.get(k) for k in ("id", "state", "node", "exit_code", "reason")})
    return 0 if states.get("succeeded", 0) == len(tasks) else 1
