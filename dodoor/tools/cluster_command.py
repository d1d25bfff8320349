"""``dodoor cluster up`` (a local cluster of processes) and ``dodoor submit``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from dodoor.service.cliargs import add_priority_mix, bounded, comma_list, env_token
from dodoor.errors import ValidationError
from dodoor.policies import DEFAULT_POLICY, LIVE_POLICIES
from dodoor.priority import CLASS_NAMES, apply_priority_mix
from dodoor.resources import Task
from dodoor.taskstates import SUCCEEDED, UNKNOWN
from dodoor.validation import parse_task
from dodoor.tools.localcluster import EXECUTORS, MAX_SCHEDULERS, ClusterSettings, LocalCluster
from dodoor.tools.submit import follow, outcome_json_lines, outcome_table


def register(subparsers: argparse._SubParsersAction) -> None:
    cluster = subparsers.add_parser(
        "cluster", help="run a local cluster of processes",
        description="A local cluster of real processes on 127.0.0.1 (docs/daemons.md).")
    actions = cluster.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up", help="start a load store, schedulers and agents on 127.0.0.1",
        description="Start a load store, schedulers and agents as processes on 127.0.0.1 and "
                    "run until Ctrl-C or SIGTERM. Each is checked to be the process answering "
                    "on its port; the first that exits during start-up ends the start with its "
                    "error. Every start is fresh unless --resume is given.")
    up.add_argument("--agents", type=bounded(int, 1), default=6,
                    help="agents, sized as a scaled copy of the paper100 mix")
    up.add_argument("--schedulers", type=bounded(int, 1, MAX_SCHEDULERS), default=2,
                    help="schedulers")
    up.add_argument("--executor", choices=EXECUTORS, default="sleep",
                    help="how agents run tasks: sleep for the duration, a local process, or "
                         "a docker container")
    up.add_argument("--base-port", type=int, default=8090, metavar="P",
                    help="load store on P, schedulers on P+10.., agents on P+100..")
    up.add_argument("--policy", default=DEFAULT_POLICY, metavar="SPEC",
                    help=f"the schedulers' policy, NAME or NAME:KEY=VALUE,...; one of "
                         f"{', '.join(LIVE_POLICIES)}")
    up.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="policy setting for the schedulers, e.g. d=8 (repeatable)")
    up.add_argument("--workdir", type=Path, default=Path(".dodoor-cluster"),
                    help="journals, the load store's membership file, and one log per process")
    up.add_argument("--resume", action="store_true",
                    help="keep the previous run's journals and membership in --workdir (its "
                         "unfinished tasks run again, its task ids stay taken); by default "
                         "they are removed")
    up.set_defaults(func=_cluster_up)

    sub = subparsers.add_parser(
        "submit", help="submit tasks and wait for them to finish",
        description="Submit one task (its command after --), COUNT copies of it, or every "
                    "task of a trace; follow them to the end and print their outcome. Exits 0 "
                    "when every task succeeded.")
    sub.add_argument("--url", required=True, help="scheduler URL(s), comma-separated; each "
                                                  "task's id picks its scheduler (the next "
                                                  "one when that one is unreachable)")
    sub.add_argument("--trace", type=Path,
                     help="submit every task of a trace file instead (default: the one task "
                          "the options below describe)")
    sub.add_argument("--limit", type=bounded(int, 1),
                     help="only the first N tasks of the trace (default: all)")
    sub.add_argument("--duration-scale", type=bounded(float, 0.0), default=1.0,
                     help="multiply trace durations (e.g. 0.01 to run a 60-s trace quickly)")
    sub.add_argument("--cores", type=float, default=1.0, help="cores of the task")
    sub.add_argument("--memory-mb", type=int, default=256, help="memory of the task, MiB")
    sub.add_argument("--disk-mb", type=int, default=0, help="disk of the task, MiB")
    sub.add_argument("--duration-ms", type=float, default=1000.0,
                     help="the task's declared duration: what the sleep executor sleeps and "
                          "the schedulers' estimate")
    sub.add_argument("--priority", choices=tuple(CLASS_NAMES), default=None,
                     help="class of the single task (default: normal)")
    add_priority_mix(sub, "--seed")
    sub.add_argument("--seed", type=int, default=0, help="seed of the --priority-mix draw")
    sub.add_argument("--image", help="docker executor: the image to run (default: the agent's)")
    sub.add_argument("--count", type=bounded(int, 1), default=1, help="copies of the single task")
    sub.add_argument("--batch", type=bounded(int, 1), default=100, help="tasks per request")
    sub.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the end")
    sub.add_argument("--json", action="store_true",
                     help="print one JSON object per task (id, state, node, exit_code, reason) "
                          "instead of the table")
    sub.add_argument("command_argv", nargs=argparse.REMAINDER, metavar="-- CMD...",
                     help="the command the task runs (process and docker executors); with "
                          "--trace, the command of every trace task that has none")
    sub.set_defaults(func=_submit)


def _cluster_up(args: argparse.Namespace) -> int:
    settings = ClusterSettings(
        agents=args.agents, schedulers=args.schedulers, executor=args.executor,
        base_port=args.base_port, policy=args.policy, params=tuple(args.param),
        workdir=args.workdir, token=env_token(), resume=args.resume,
    )
    cluster = LocalCluster(settings)
    # SIGTERM stops the cluster exactly like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    cluster.start()  # a ClusterError has stopped what did start; the CLI prints it
    died = []
    try:
        print(f"load store: {cluster.loadstore_url}")
        for url in cluster.scheduler_urls:
            print(f"scheduler:  {url}")
        print(f"{len(cluster.agent_urls)} agents ({args.executor} executor); logs in {args.workdir}")
        print("Ctrl-C stops the cluster.", flush=True)
        while True:
            # A component that dies is reported once and reaped; the others keep running.
            for gone in cluster.reap():
                died.append(gone)
                print(f"dodoor cluster up: {gone.describe()}", file=sys.stderr, flush=True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        print("cluster stopped" + (f"; {len(died)} component(s) had died" if died else ""),
              file=sys.stderr)
    return 1 if died else 0


# one request's limit; an unreachable scheduler is noticed sooner, by the client's
# connect timeout
SUBMIT_TIMEOUT_S = 30.0


def _submit(args: argparse.Namespace) -> int:
    tasks = _tasks_from_args(args)
    urls = [u.rstrip("/") for u in comma_list(args.url)]
    if not urls:
        raise ValidationError("--url", f"no scheduler URL in {args.url!r}")
    return asyncio.run(_submit_and_follow(urls, tasks, args))


def _tasks_from_args(args: argparse.Namespace) -> list[Task]:
    command = [c for c in args.command_argv if c != "--"] or None
    if args.trace is not None:
        from workloads.registry import load_trace

        loaded = load_trace(args.trace, limit=args.limit)
        if not loaded:
            raise ValidationError("--trace", f"{args.trace} holds no tasks")
        run_id = uuid.uuid4().hex[:8]
        tasks = []
        for t in loaded:
            body = {**t.to_dict(), "id": f"{run_id}-{t.task_id}",
                    "duration_ms": max(1.0, t.duration_ms * args.duration_scale)}
            # trace tasks carry no command; the process executor needs one to run
            if command and not body.get("command"):
                body["command"] = command
            tasks.append(parse_task(body))
        return _with_mix(tasks, args)
    body = {"cores": args.cores, "memory_mb": args.memory_mb, "disk_mb": args.disk_mb,
            "duration_ms": args.duration_ms}
    if command:
        body["command"] = command
    if args.image:
        body["image"] = args.image
    if args.priority is not None:
        body["priority"] = CLASS_NAMES[args.priority]
    return _with_mix([parse_task(body, make_id=lambda: uuid.uuid4().hex)
                      for _ in range(args.count)], args)


def _with_mix(tasks: list[Task], args: argparse.Namespace) -> list[Task]:
    """``tasks`` with classes drawn by ``--priority-mix``, if given (it overrides the rest)."""
    if args.priority_mix is None:
        return tasks
    if args.priority is not None:
        raise ValidationError("--priority", "conflicts with --priority-mix; give one of them")
    return apply_priority_mix(tasks, args.priority_mix, args.seed)


async def _submit_and_follow(urls: list[str], tasks: list[Task], args: argparse.Namespace) -> int:
    # the client is a tool's dependency: imported here, never by the daemons
    from dodoor.client import AsyncClient, NoSchedulerError, RequestError

    async with AsyncClient(urls, env_token(), timeout=SUBMIT_TIMEOUT_S,
                           submit_batch=args.batch) as client:
        try:
            handles = await client.submit_many(t.to_dict() for t in tasks)
            print(f"submitted {len(handles)} tasks", file=sys.stderr)
            outcomes = await follow(client, handles, timeout_s=args.timeout)
        except RequestError as exc:
            print(f"dodoor submit: rejected: {exc}", file=sys.stderr)
            return 1
        except NoSchedulerError as exc:
            print(f"dodoor submit: {exc}", file=sys.stderr)
            return 1
    counts = Counter(str(o.get("state", "unknown")) for o in outcomes)
    summary = "  ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    if args.json:
        print(summary, file=sys.stderr)
        for line in outcome_json_lines(outcomes):
            print(line)
    else:
        print(summary)
        print(outcome_table(outcomes))
    return 0 if counts.get(SUCCEEDED, 0) == len(tasks) else 1
