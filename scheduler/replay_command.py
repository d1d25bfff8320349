"""``dodoor replay``, ``dodoor evaluate`` and ``dodoor profile`` (docs/evaluation.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

from dodoor.errors import ValidationError
from dodoor.resources import Task


def register(subparsers: Any) -> None:
    rp = subparsers.add_parser("replay", help="replay a trace against running schedulers",
                               description="Submit a trace's tasks at their arrival times over "
                                           "HTTP, follow them to the end, write summary.json.")
    rp.add_argument("--url", required=True, help="scheduler URL(s), comma-separated")
    _workload_args(rp)
    rp.add_argument("--loadstore", default=None, help="load store URL (for its /metrics)")
    rp.add_argument("--agents", default=None,
                    help="agent URLs for /metrics, comma-separated (default: GET /v1/nodes)")
    rp.add_argument("--policy-label", default=None,
                    help="policy name in summary.json (default: the scheduler's /healthz)")
    rp.add_argument("--max-resubmits", type=int, default=3)
    rp.add_argument("--timeout", type=float, default=600.0, help="seconds to wait in all")
    rp.add_argument("--out", default="out", help="output directory")
    rp.set_defaults(func=_replay)

    ev = subparsers.add_parser("evaluate", help="all policies in simulation and live; report.md")
    _workload_args(ev)
    ev.add_argument("--policies", default="dodoor,power-of-two,sparrow,prequal,random")
    where = ev.add_mutually_exclusive_group()
    where.add_argument("--live", default=None,
                       help="'local' (a fresh local cluster per policy) or scheduler URL(s)")
    where.add_argument("--compose", action="store_true",
                       help="docker compose per policy (DODOOR_POLICY)")
    ev.add_argument("--agents", type=int, default=6, help="cluster size (scaled paper100 mix)")
    ev.add_argument("--schedulers", type=int, default=2)
    ev.add_argument("--executor", default="sleep", choices=("sleep", "process", "docker"),
                    help="executor of the --live local agents (docker runs --function-mix)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--start-overhead-ms", type=float, default=None,
                    help="slot time each task holds beyond its duration in the simulation "
                         "(default: measured for docker agents, else 0)")
    ev.add_argument("--sim-seeds", type=int, default=10,
                    help="simulate each policy with this many seeds (from --seed) to measure "
                         "the run-to-run spread the ranking check allows for (default 10)")
    ev.add_argument("--timeout", type=float, default=600.0, help="seconds per live run")
    ev.add_argument("--out", default="out/evaluate", help="output directory")
    ev.set_defaults(func=_evaluate)

    pf = subparsers.add_parser("profile", help="measure the function classes of the mix")
    pf.add_argument("--out", default=None,
                    help="profile JSON (default: the bundled workloads/data/function_profile.json)")
    pf.add_argument("--repeat", type=int, default=3)
    pf.add_argument("--local", action="store_true", help="do not use docker")
    pf.set_defaults(func=_profile)


def _workload_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", default=None, help="trace file, any format (default: bundled 60-s)")
    p.add_argument("--limit", type=int, default=None, help="first N tasks")
    p.add_argument("--speedup", type=float, default=1.0, help="divide arrival gaps by X")
    p.add_argument("--duration-scale", type=float, default=1.0, help="multiply durations")
    p.add_argument("--function-mix", nargs="?", const="", default=None, metavar="MIX",
                   help="run the python functions instead (default mix short=0.6,medium=0.3,"
                        "long=0.1)")
    p.add_argument("--profile", default=None, help="function profile JSON (with --function-mix)")
    p.add_argument("--mix-seed", type=int, default=0)


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
    return tasks


def _urls(text: str) -> list[str]:
    return [u.strip().rstrip("/") for u in text.split(",") if u.strip()]


def _replay(args: argparse.Namespace) -> int:
    from scheduler.replay import ReplaySettings, replay, scale_tasks
    from scheduler.report import markdown_table

    token = os.environ.get("DODOOR_TOKEN")
    urls = _urls(args.url)
    tasks = scale_tasks(load_workload(args), args.speedup, args.duration_scale,
                        prefix=uuid.uuid4().hex[:8] + "-")
    settings = ReplaySettings(
        urls=tuple(urls), agents=tuple(_urls(args.agents)) if args.agents else None,
        loadstore=args.loadstore.rstrip("/") if args.loadstore else None,
        max_resubmits=args.max_resubmits, timeout_s=args.timeout, token=token,
    )
    policy = args.policy_label or _policy_of(urls[0], token)
    print(f"replaying {len(tasks)} tasks against {', '.join(urls)} ({policy})", file=sys.stderr)
    result = asyncio.run(replay(tasks, settings))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from dodoor.sim.command import file_part

    result.records.write_csv(out / f"tasks_{file_part(policy)}.csv", result.nodes)
    summary = result.summary(policy, {"speedup": args.speedup,
                                      "duration_scale": args.duration_scale})
    (out / "summary.json").write_text(json.dumps([summary], indent=2) + "\n", encoding="utf-8")
    print(markdown_table([summary]))
    print(f"states: {dict(result.states)}; resubmitted {result.resubmits}; wrote "
          f"{out / 'summary.json'}", file=sys.stderr)
    return 0 if result.states.get("succeeded", 0) == len(tasks) else 1


def _policy_of(url: str, token: str | None) -> str:
    import urllib.request

    request = urllib.request.Request(url + "/healthz", headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5.0) as resp:
            return str(json.loads(resp.read()).get("policy", "unknown"))
    except (OSError, ValueError) as exc:
        raise ValidationError("url", f"cannot reach scheduler {url}: {exc}") from exc


def _evaluate(args: argparse.Namespace) -> int:
    from dodoor.sim.command import parse_policies
    from scheduler.evaluate import EvalSettings, evaluate

    if args.sim_seeds < 1:
        raise ValidationError("sim-seeds", f"must be >= 1, got {args.sim_seeds}")
    if args.start_overhead_ms is not None and not (0 <= args.start_overhead_ms < math.inf):
        raise ValidationError("start-overhead-ms",
                              f"must be finite and >= 0, got {args.start_overhead_ms}")
    live = "compose" if args.compose else args.live
    settings = EvalSettings(
        policies=tuple(parse_policies([args.policies])), out=Path(args.out), live=live,
        speedup=args.speedup, duration_scale=args.duration_scale, agents=args.agents,
        schedulers=args.schedulers, executor=args.executor, seed=args.seed,
        sim_seeds=args.sim_seeds, start_overhead_ms=args.start_overhead_ms,
        timeout_s=args.timeout,
        token=os.environ.get("DODOOR_TOKEN"),
        command="dodoor " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    path = evaluate(load_workload(args), settings)
    print(path.read_text(encoding="utf-8"))
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _profile(args: argparse.Namespace) -> int:
    from workloads.function_profile import run_profile

    path = run_profile(args.out, repeat=args.repeat, local=args.local)
    print(path.read_text(encoding="utf-8"))
    return 0
