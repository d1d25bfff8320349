"""``dodoor replay``, ``dodoor evaluate`` and ``dodoor profile`` (docs/evaluation.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shlex
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from dodoor.service.auth_token import auth_headers
from dodoor.service.cliargs import (add_policy_list, add_priority_mix, bounded, comma_list,
                                    env_token, output_dir)
from dodoor.errors import ValidationError
from dodoor.policies.lists import parse_policy_list, split_policy_list
from dodoor.resources import Task
from dodoor.tools.inputs import file_part
from dodoor.taskstates import SUCCEEDED


EVALUATE_POLICIES = "dodoor,power-of-two,sparrow,prequal,random"
# Never into the installed package: a profile is this host's measurement.
DEFAULT_PROFILE_OUT = "out/function_profile.json"


def register(subparsers: Any) -> None:
    rp = subparsers.add_parser(
        "replay", help="replay a trace against running schedulers",
        description="Submit a trace's tasks at their arrival times over HTTP to running "
                    "schedulers, follow them to the end, write summary.json and a per-task "
                    "CSV. Exits 0 when every task succeeded.")
    rp.add_argument("--url", required=True, help="scheduler URL(s), comma-separated")
    _workload_args(rp)
    rp.add_argument("--loadstore", default=None,
                    help="load store URL, for its /metrics (default: none)")
    rp.add_argument("--agents", default=None,
                    help="agent URLs for /metrics, comma-separated (default: GET /v1/nodes)")
    rp.add_argument("--policy-label", default=None,
                    help="policy name in summary.json (default: the scheduler's /healthz)")
    rp.add_argument("--max-resubmits", type=bounded(int, 0), default=3,
                    help="times a lost task is submitted again")
    rp.add_argument("--timeout", type=bounded(float, 0.0), default=600.0,
                    help="seconds to wait in all")
    rp.add_argument("--out", default="out", help="output directory, created if missing")
    rp.set_defaults(func=_replay)

    ev = subparsers.add_parser(
        "evaluate", help="every policy in simulation and live; report.md",
        description="Simulate each --policy on the workload, optionally replay it on a live "
                    "cluster (--live local: a fresh local cluster per policy; --live URL: the "
                    "running cluster's own policy; --compose: docker compose per policy), and "
                    "write summaries, figures and report.md comparing them.")
    _workload_args(ev)
    add_policy_list(ev, f"{EVALUATE_POLICIES}; with --live URL, the cluster's own policy is "
                        "added first", aliases=("--policies",))
    where = ev.add_mutually_exclusive_group()
    where.add_argument("--live", default=None, metavar="local|URL[,URL...]",
                       help="'local' (a fresh local cluster per policy) or the URLs of a "
                            "running cluster's schedulers (its /healthz policy is the one "
                            "replayed) (default: simulation only)")
    where.add_argument("--compose", action="store_true",
                       help="docker compose per policy (DODOOR_POLICY)")
    ev.add_argument("--agents", type=bounded(int, 1), default=6,
                    help="cluster size, simulated and --live local (a scaled paper100 mix)")
    ev.add_argument("--schedulers", type=bounded(int, 1), default=2,
                    help="schedulers, simulated and --live local")
    ev.add_argument("--base-port", type=int, default=None, metavar="P",
                    help="--live local: load store on P, schedulers on P+10.., agents on "
                         "P+100.. (default: a free block of ports)")
    ev.add_argument("--executor", default="sleep", choices=("sleep", "process", "docker"),
                    help="executor of the --live local agents (docker runs --function-mix)")
    ev.add_argument("--warm", action="store_true",
                    help="every task opts in to its docker agent's warm containers (task "
                         "label warm=true; docs/docker.md); the simulation stays cold")
    ev.add_argument("--seed", type=int, default=0, help="seed of the first simulated run")
    ev.add_argument("--start-overhead-ms", type=float, default=None,
                    help="slot time each task holds beyond its duration in the simulation "
                         "(default: measured for docker agents, else 0)")
    ev.add_argument("--sim-seeds", type=int, default=10,
                    help="simulate each policy with this many seeds (from --seed) to measure "
                         "the run-to-run spread the ranking check allows for (default 10)")
    ev.add_argument("--timeout", type=bounded(float, 0.0), default=600.0,
                    help="seconds per live run")
    ev.add_argument("--out", default="out/evaluate", help="output directory, created if missing")
    ev.set_defaults(func=_evaluate)

    pf = subparsers.add_parser(
        "profile", help="measure the function classes of the mix",
        description="Run each function class of the --function-mix workload a few times (in "
                    "the dodoor-task:python image when docker has it, else as local "
                    "processes) and write its median duration and peak memory as a profile "
                    "JSON, for evaluate/replay --profile.")
    pf.add_argument("--out", default=DEFAULT_PROFILE_OUT,
                    help="profile JSON to write (the bundled one is "
                         "workloads/data/function_profile.json)")
    pf.add_argument("--repeat", type=bounded(int, 1), default=3, help="runs of each class")
    pf.add_argument("--local", action="store_true",
                    help="run the functions as local processes even when docker is available")
    pf.set_defaults(func=_profile)


def _workload_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", default=None,
                   help="trace file, any format (default: the bundled azure_data_60.csv)")
    p.add_argument("--limit", type=bounded(int, 1), default=None,
                   help="first N tasks (default: all)")
    p.add_argument("--speedup", type=float, default=1.0, help="divide arrival gaps by X")
    p.add_argument("--duration-scale", type=float, default=1.0, help="multiply durations")
    p.add_argument("--function-mix", nargs="?", const="", default=None, metavar="MIX",
                   help="run the python functions instead, CLASS=WEIGHT,... (default: off; "
                        "without a value short=0.6,medium=0.3,long=0.1)")
    p.add_argument("--profile", default=None,
                   help="function profile JSON, with --function-mix (default: the bundled one)")
    p.add_argument("--mix-seed", type=int, default=0,
                   help="seed of the draws of each task's function class and priority class")
    add_priority_mix(p, "--mix-seed")


def load_workload(args: argparse.Namespace) -> list[Task]:
    """The trace's tasks, maybe mapped onto the function mix (not yet scaled)."""
    from workloads.dodoor_csv import bundled_trace
    from workloads.registry import load_trace

    if args.limit is not None and args.limit < 1:
        raise ValidationError("limit", f"must be >= 1, got {args.limit}")
    if not (args.speedup > 0 and args.duration_scale > 0):
        raise ValidationError("speedup", f"speedup and duration scale must be > 0, got "
                              f"{args.speedup}, {args.duration_scale}")
    tasks = load_trace(args.trace or bundled_trace(), limit=args.limit)
    if not tasks:
        raise ValidationError("trace", f"{args.trace or 'bundled trace'} holds no tasks")
    if args.function_mix is not None:
        from workloads.function_mix import apply_function_mix, load_profile, parse_mix

        tasks = apply_function_mix(tasks, load_profile(args.profile),
                                   parse_mix(args.function_mix), seed=args.mix_seed)
    if args.priority_mix is not None:
        from dodoor.priority import apply_priority_mix

        tasks = apply_priority_mix(tasks, args.priority_mix, args.mix_seed)
    return tasks


def _replay(args: argparse.Namespace) -> int:
    from dodoor.tools.replay import ReplaySettings, replay, scale_tasks
    from dodoor.tools.report import markdown_table

    token = env_token()
    urls = [u.rstrip("/") for u in comma_list(args.url)]
    if not urls:
        raise ValidationError("--url", f"no scheduler URL in {args.url!r}")
    tasks = scale_tasks(load_workload(args), args.speedup, args.duration_scale,
                        prefix=uuid.uuid4().hex[:8] + "-")
    settings = ReplaySettings(
        urls=tuple(urls), agents=tuple(u.rstrip("/") for u in comma_list(args.agents)) if args.agents else None,
        loadstore=args.loadstore.rstrip("/") if args.loadstore else None,
        max_resubmits=args.max_resubmits, timeout_s=args.timeout, token=token,
    )
    policy = args.policy_label or _policy_of(urls[0], token)
    print(f"replaying {len(tasks)} tasks against {', '.join(urls)} ({policy})", file=sys.stderr)
    out = output_dir(args.out)
    result = asyncio.run(replay(tasks, settings))
    result.records.write_csv(out / f"tasks_{file_part(policy)}.csv", result.nodes)
    summary = result.summary(policy, {"speedup": args.speedup,
                                      "duration_scale": args.duration_scale})
    (out / "summary.json").write_text(json.dumps([summary], indent=2) + "\n", encoding="utf-8")
    print(markdown_table([summary]))
    print(f"states: {dict(result.states)}; resubmitted {result.resubmits}; wrote "
          f"{out / 'summary.json'}", file=sys.stderr)
    return 0 if result.states.get(SUCCEEDED, 0) == len(tasks) else 1


def _policy_of(url: str, token: str | None) -> str:
    import urllib.request

    request = urllib.request.Request(url + "/healthz", headers=auth_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=5.0) as resp:
            return str(json.loads(resp.read()).get("policy", "unknown"))
    except (OSError, ValueError) as exc:
        raise ValidationError("url", f"cannot reach scheduler {url}: {exc}") from exc


def _evaluate(args: argparse.Namespace) -> int:
    from dodoor.tools.evaluate import EvalSettings, evaluate

    if args.sim_seeds < 1:
        raise ValidationError("sim-seeds", f"must be >= 1, got {args.sim_seeds}")
    if args.start_overhead_ms is not None and not (0 <= args.start_overhead_ms < math.inf):
        raise ValidationError("start-overhead-ms",
                              f"must be finite and >= 0, got {args.start_overhead_ms}")
    live = "compose" if args.compose else args.live
    if args.base_port is not None and live != "local":
        raise ValidationError("--base-port", "applies to --live local only")
    if live is not None and live not in ("local", "compose") and not comma_list(live):
        raise ValidationError("--live", f"expected 'local' or scheduler URLs, got {live!r}")
    settings = EvalSettings(
        policies=tuple(parse_policy_list(args.policy, split_policy_list(EVALUATE_POLICIES))),
        out=output_dir(args.out), live=live,
        speedup=args.speedup, duration_scale=args.duration_scale, agents=args.agents,
        schedulers=args.schedulers, base_port=args.base_port, executor=args.executor,
        seed=args.seed, sim_seeds=args.sim_seeds, start_overhead_ms=args.start_overhead_ms,
        timeout_s=args.timeout, token=env_token(),
        command="dodoor " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    tasks = load_workload(args)
    if args.warm:
        # the agent's task label for its warm pool (node_agent/docker_spec.py, docs/docker.md)
        tasks = [replace(t, labels={**t.labels, "warm": "true"}) for t in tasks]
    path = evaluate(tasks, settings)
    print(path.read_text(encoding="utf-8"))
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _profile(args: argparse.Namespace) -> int:
    from workloads.function_profile import run_profile

    out = Path(args.out)
    output_dir(out.parent)
    path = run_profile(out, repeat=args.repeat, local=args.local)
    print(path.read_text(encoding="utf-8"))
    print(f"wrote {path}; use it with --function-mix --profile {path}", file=sys.stderr)
    return 0
