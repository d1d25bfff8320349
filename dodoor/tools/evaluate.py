"""``dodoor evaluate``: every policy in simulation and (optionally) live, one report.

The simulator and the live replay get the very same task list (arrivals
compressed by the speedup, durations scaled) and the same cluster shape
(``scaled(agents)``, the nodes ``LocalCluster`` starts), so their summaries
compare metric by metric.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from dodoor.service.auth_token import auth_headers
from dodoor.errors import ValidationError
from dodoor.policies import LIVE_POLICIES
from dodoor.policies.lists import parse_policy_list
from dodoor.resources import Task
from dodoor.tools.inputs import file_part
from dodoor.sim.records import TaskRecords
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from dodoor.tools.localcluster import ClusterSettings, LocalCluster
from dodoor.tools.replay import ReplaySettings, replay, scale_tasks
from dodoor.tools.report import render
from dodoor.taskstates import SUCCEEDED
from workloads.clusters import scaled

log = logging.getLogger(__name__)
COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"
COMPOSE_SCHEDULERS = ("http://127.0.0.1:8101", "http://127.0.0.1:8102")
COMPOSE_LOADSTORE = "http://127.0.0.1:8090"
COMPOSE_AGENTS = 6  # agent-0..5 in compose/docker-compose.yml


@dataclass(frozen=True)
class EvalSettings:
    """live: None (simulation only), ``local`` (a fresh LocalCluster per policy),
    ``compose`` (docker compose with DODOOR_POLICY) or scheduler URLs (one running
    cluster: only its own policy is replayed)."""

    policies: tuple[str, ...]
    out: Path
    live: str | None = None
    speedup: float = 1.0
    duration_scale: float = 1.0
    agents: int = 6
    schedulers: int = 2
    base_port: int | None = None  # --live local; None: a free block of ports per run
    executor: str = "sleep"
    seed: int = 0
    sim_seeds: int = 10  # seeds per simulated policy, to know its run-to-run spread
    # Slot time a task holds beyond its duration; None: measured for docker agents, else 0.
    start_overhead_ms: float | None = None
    delay_ms: float = 0.5
    timeout_s: float = 600.0
    command: str = "dodoor evaluate"
    token: str | None = None
    notes: list[str] = field(default_factory=list)


def free_base_port(span: int = 120, tries: int = 50) -> int:
    """A base port P with P..P+span free on 127.0.0.1 (LocalCluster uses P, P+10.., P+100..)."""
    import random

    rng = random.Random()
    for _ in range(tries):
        base = rng.randrange(20000, 60000 - span)
        if all(_port_free(base + i) for i in range(span)):
            return base
    raise RuntimeError(f"no free block of {span} ports found on 127.0.0.1")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_ready(urls: Sequence[str], nodes: int, timeout_s: float = 30.0) -> None:
    """Until every scheduler reports an ``ok`` view with all ``nodes``."""
    deadline = time.monotonic() + timeout_s
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        url = pending[0]
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2.0) as resp:
                health = json.loads(resp.read())
            if health.get("status") == "ok" and int(health.get("nodes", 0)) >= nodes:
                pending.pop(0)
                continue
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    if pending:
        raise TimeoutError(f"schedulers {pending} did not see {nodes} nodes in {timeout_s:.0f} s")


def run_sim(tasks: Sequence[Task], policy: str, s: EvalSettings) -> tuple[dict, TaskRecords]:
    """The simulated run with ``s.seed``, plus the spread of the mean makespan over seeds.

    One live run is one draw of each policy's randomness; the seeds' spread says how
    far apart two policies must be before their order means anything.
    """
    def once(seed: int):
        settings = SimSettings(delay_ms=s.delay_ms, schedulers=s.schedulers, seed=seed,
                               start_overhead_ms=s.start_overhead_ms or 0.0)
        return simulate(tasks, scaled(s.agents), policy, settings)

    result = once(s.seed)
    summary = result.summary()
    summary["settings"]["mode"] = "sim"
    means = [summary["makespan_ms"]["mean"]]
    means += [once(s.seed + i).summary()["makespan_ms"]["mean"] for i in range(1, s.sim_seeds)]
    summary["seed_spread"] = {"seeds": len(means), "makespan_mean_ms": {
        "mean": statistics.fmean(means), "sd": statistics.pstdev(means),
        "min": min(means), "max": max(means)}}
    return summary, result.records


def _cluster_settings(s: EvalSettings, policy: str, workdir: Path) -> ClusterSettings:
    """The local cluster of one live run (checks the ports and the policy when built)."""
    return ClusterSettings(agents=s.agents, schedulers=s.schedulers, executor=s.executor,
                           policy=policy, base_port=s.base_port or free_base_port(),
                           workdir=workdir, token=s.token)


def check_live_local(s: EvalSettings) -> None:
    """Every --live local cluster's settings, checked before the first simulation."""
    for policy in s.policies:
        if policy.partition(":")[0] in LIVE_POLICIES:
            _cluster_settings(s, policy, s.out)  # builds nothing; raises ValidationError


def live_policy(urls: Sequence[str], token: str | None = None) -> str:
    """The policy spec a running cluster's schedulers report in ``/healthz``; they must agree."""
    specs = {}
    for url in urls:
        request = urllib.request.Request(url + "/healthz", headers=auth_headers(token))
        try:
            with urllib.request.urlopen(request, timeout=5.0) as resp:
                specs[url] = str(json.loads(resp.read()).get("policy", ""))
        except (OSError, ValueError, AttributeError) as exc:
            raise ValidationError("--live", f"cannot reach scheduler {url}: {exc}") from exc
    if len(set(specs.values())) != 1:
        raise ValidationError("--live", "the schedulers run different policies: "
                                        + ", ".join(f"{u} {p!r}" for u, p in specs.items()))
    spec = next(iter(specs.values()))
    if not spec:
        raise ValidationError("--live", f"{urls[0]}/healthz names no policy")
    try:
        parse_policy_list([spec], default=[])
    except ValidationError as exc:
        raise ValidationError("--live", f"the cluster runs {spec!r}, which this simulator "
                                        f"cannot: {exc}") from exc
    return spec


def run_live_local(tasks: Sequence[Task], policy: str, s: EvalSettings) -> tuple[dict, TaskRecords]:
    workdir = s.out / f"cluster-{file_part(policy)}"
    cluster = LocalCluster(_cluster_settings(s, policy, workdir))
    with cluster:
        wait_ready(cluster.scheduler_urls, s.agents)
        rs = ReplaySettings(urls=tuple(cluster.scheduler_urls), agents=tuple(cluster.agent_urls),
                            loadstore=cluster.loadstore_url, timeout_s=s.timeout_s, token=s.token)
        result = asyncio.run(replay(_fresh_ids(tasks), rs))
    return _live_summary(result, policy, s), result.records


def run_live_compose(tasks: Sequence[Task], policy: str,
                     s: EvalSettings) -> tuple[dict, TaskRecords]:
    env = {**os.environ, "DODOOR_POLICY": policy}
    # the standalone docker-compose when installed, else the docker CLI plugin
    tool = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]
    base = [*tool, "-f", str(COMPOSE_FILE)]
    # docker-compose 1.x has no --wait: readiness is the schedulers seeing every agent
    subprocess.run([*base, "up", "-d"], env=env, check=True)
    try:
        wait_ready(COMPOSE_SCHEDULERS, COMPOSE_AGENTS, timeout_s=120.0)
        # compose agents publish no ports: their messages are counted at the receivers
        rs = ReplaySettings(urls=COMPOSE_SCHEDULERS, agents=(), loadstore=COMPOSE_LOADSTORE,
                            timeout_s=s.timeout_s, token=s.token)
        result = asyncio.run(replay(_fresh_ids(tasks), rs))
    finally:
        subprocess.run([*base, "down"], env=env, check=False)
    return _live_summary(result, policy, s), result.records


def run_live_url(tasks: Sequence[Task], urls: Sequence[str], policy: str,
                 s: EvalSettings) -> tuple[dict, TaskRecords]:
    rs = ReplaySettings(urls=tuple(urls), timeout_s=s.timeout_s, token=s.token)
    result = asyncio.run(replay(_fresh_ids(tasks), rs))
    return _live_summary(result, policy, s), result.records


def _fresh_ids(tasks: Sequence[Task]) -> list[Task]:
    return scale_tasks(tasks, prefix=uuid.uuid4().hex[:8] + "-")


def _note_unfinished(summary: dict, s: EvalSettings) -> None:
    states = summary.get("settings", {}).get("states", {})
    other = {k: v for k, v in states.items() if k != SUCCEEDED}
    if other:
        s.notes.append(f"live {summary['policy']}: not every task succeeded {other}; its "
                       "makespan and throughput figures are undefined (shown as nan/0)")


def _live_summary(result, policy: str, s: EvalSettings) -> dict:
    result.records.write_csv(s.out / f"tasks_live_{file_part(policy)}.csv", result.nodes)
    return result.summary(policy, {"speedup": s.speedup, "duration_scale": s.duration_scale,
                                   "schedulers": s.schedulers})


def _with_overhead(s: EvalSettings, tasks: Sequence[Task]) -> EvalSettings:
    """Settle the container overhead the simulator is told of (see ``dodoor.tools.overhead``)."""
    docker_agents = s.live == "compose" or (s.live == "local" and s.executor == "docker")
    if s.start_overhead_ms is not None or not docker_agents:
        return s if s.start_overhead_ms is not None else replace(s, start_overhead_ms=0.0)
    from dodoor.tools.overhead import busy_overhead_ms, container_overhead_ms

    slots = sum(n.slots for n in scaled(s.agents))
    print(f"measuring the container overhead for the simulator (1 and {slots} at a time)...",
          file=sys.stderr)
    solo = container_overhead_ms(runs=5)
    full = max(solo, container_overhead_ms(runs=3, concurrency=slots))
    duration = statistics.fmean(t.duration_ms for t in tasks)
    ms = busy_overhead_ms(solo, full, slots, duration)
    s.notes.append(f"simulated with a start overhead of {ms:.0f} ms per task: an empty "
                   f"dodoor-task:busybox container's create+start+wait+remove took {solo:.0f} ms "
                   f"alone and {full:.0f} ms with {slots} at once (the cluster's slots), measured "
                   f"just before the runs; {ms:.0f} ms is what it comes to with every slot "
                   f"cycling through {duration:.0f}-ms tasks (dodoor.tools.overhead."
                   "busy_overhead_ms; --start-overhead-ms overrides)")
    return replace(s, start_overhead_ms=ms)


def evaluate(trace_tasks: Sequence[Task], s: EvalSettings) -> Path:
    """Run everything, write summaries, CSVs, figures and ``report.md``; returns its path."""
    from dodoor.tools import report_plots

    tasks = scale_tasks(trace_tasks, s.speedup, s.duration_scale)
    s.out.mkdir(parents=True, exist_ok=True)
    urls: list[str] = []
    if s.live not in (None, "local", "compose"):
        # A running cluster: what it runs is what is compared, simulated first.
        urls = [u.strip().rstrip("/") for u in s.live.split(",") if u.strip()]
        running = live_policy(urls, s.token)
        s = replace(s, policies=tuple(dict.fromkeys((running, *s.policies))))
    elif s.live == "local":
        check_live_local(s)
    s = _with_overhead(s, tasks)
    sim, live, records = [], [], {}
    for policy in s.policies:
        print(f"simulating {policy}: {len(tasks)} tasks", file=sys.stderr)
        summary, rec = run_sim(tasks, policy, s)
        sim.append(summary)
        records[f"{policy} sim"] = rec
        rec.write_csv(s.out / f"tasks_sim_{file_part(policy)}.csv", scaled(s.agents))
    live_policies = s.policies
    if urls:
        policy = s.policies[0]
        print(f"live {policy} ({', '.join(urls)}): {len(tasks)} tasks", file=sys.stderr)
        summary, rec = run_live_url(tasks, urls, policy, s)
        _note_unfinished(summary, s)
        live.append(summary)
        records[f"{policy} live"] = rec
        s.notes.append(f"live: one running cluster (policy {policy}); other policies "
                       "were simulated only")
        live_policies = ()
    for policy in live_policies if s.live in ("local", "compose") else ():
        if policy.partition(":")[0] not in LIVE_POLICIES:
            s.notes.append(f"{policy}: simulated only (no live scheduler implements it)")
            continue
        print(f"live {policy} ({s.live}): {len(tasks)} tasks", file=sys.stderr)
        runner = run_live_local if s.live == "local" else run_live_compose
        summary, rec = runner(tasks, policy, s)
        _note_unfinished(summary, s)
        live.append(summary)
        records[f"{policy} live"] = rec
    (s.out / "summary_sim.json").write_text(json.dumps(sim, indent=2) + "\n", encoding="utf-8")
    if live:
        (s.out / "summary_live.json").write_text(json.dumps(live, indent=2) + "\n",
                                                 encoding="utf-8")
    figures = ["latency_cdf.png", "messages_per_task.png", "utilization.png"]
    report_plots.latency_cdf(records, s.out / figures[0])
    report_plots.messages_bars(sim, live, s.out / figures[1])
    util = {f"{x['policy']} sim": x for x in sim} | {f"{x['policy']} live": x for x in live}
    report_plots.utilization(util, s.out / figures[2])
    if live:
        figures.append("sim_vs_live.png")
        report_plots.sim_vs_live_bars(sim, live, s.out / figures[3])
    path = s.out / "report.md"
    path.write_text(render(sim, live, s.command, figures, s.notes), encoding="utf-8")
    return path
