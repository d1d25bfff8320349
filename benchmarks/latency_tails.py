"""The tail of a submit_latency.py run: where its stalls came from (not a test).

What benchmarks/latency_probe.py keeps beside its samples (``~detail``: each
stage's maximum with its time, the slowest requests stage by stage, the stacks
of loops that were late, the agents' WAL checkpoints), printed per run, and
:class:`DiskWatch`, the journals' disk watched from outside the daemons.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

DETAIL = "~detail"  # the probe's maxima, slowest requests and stall stacks
# the handlers whose slowest requests are printed, and their stages that do not nest
SLOW = (("agent", "handler POST /internal/enqueue",
         ("read body", "agent fits", "agent submit_many")),
        ("scheduler", "handler POST /v1/tasks",
         ("read body", "scheduler parse", "scheduler check_fits", "scheduler place")))


def quantile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class DiskWatch:
    """A 4 KiB write + fsync on the journals' disk every ``every_s`` during a run, with
    the kernel's dirty and writeback memory: a stall of every agent's commit at once
    that this also shows is the disk's (or the kernel's flushing), not the agents'."""

    def __init__(self, directory: Path, every_s: float = 0.02) -> None:
        self.path, self.every_s = directory / "fsync-watch", every_s
        self.samples: list[tuple[float, float, int, int]] = []  # t, fsync s, dirty, writeback kB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-watch", daemon=True)

    def __enter__(self) -> "DiskWatch":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while not self._stop.wait(self.every_s):
                os.pwrite(fd, os.urandom(4096), 0)
                t0 = time.perf_counter()
                os.fsync(fd)
                dt = time.perf_counter() - t0
                mem = dict(line.split(":", 1) for line in open("/proc/meminfo"))
                self.samples.append((time.time(), dt, int(mem["Dirty"].split()[0]),
                                     int(mem["Writeback"].split()[0])))
        finally:
            os.close(fd)


def report_stalls(run: dict, top: int = 5) -> None:
    """Each process's worst loop lag and GC pause (ms @ seconds into the run), the
    slowest requests stage by stage, and where the stalled loops stood."""
    t0, detail = run.get("t_start", 0.0), run.get("detail", [])
    if not detail:
        return

    def at(pair: list | None) -> str:
        return "-" if not pair else f"{pair[0] * 1e3:.0f}@{pair[1] - t0:.2f}s"

    disk = run.get("disk", [])
    if disk:
        worst = max(disk, key=lambda x: x[1])
        print(f"   the disk, a 4 KiB fsync every 20 ms: n={len(disk)}, p50 "
              f"{quantile([x[1] for x in disk], .5) * 1e3:.2f} ms, max {worst[1] * 1e3:.0f} ms @"
              f"{worst[0] - t0:.2f}s ({sum(x[1] > 0.05 for x in disk)} over 50 ms); dirty max "
              f"{max(x[2] for x in disk) / 1024:.1f} MiB, writeback max "
              f"{max(x[3] for x in disk) / 1024:.1f} MiB")
        cps = sorted(c for d in detail for c in d.get("checkpoints", []))
        slow = [x for x in disk if x[1] > 0.05]
        near = sum(any(c[0] <= x[0] and x[0] - x[1] <= c[0] + c[1] for c in cps) for x in slow)
        print(f"   WAL checkpoints in the agents' commits: {len(cps)}, max "
              f"{max((c[1] for c in cps), default=0) * 1e3:.0f} ms; disk stalls > 50 ms "
              f"overlapping one: {near} of {len(slow)}")
    print("   worst per process (ms @ s into the run): loop lag / GC pause / stalls > 100 ms")
    for d in detail:
        m = d.get("max", {})
        print(f"     {d['process']:22s} {at(m.get('loop lag')):>14s} "
              f"{at(m.get('gc pause')):>14s}  {len(d.get('stalls', []))}")
    for role, handler, parts in SLOW:
        recs = sorted(((r, d["process"]) for d in detail if d["role"] == role
                       for r in d.get("slowest", {}).get(handler, [])),
                      key=lambda x: -x[0]["total"])[:top]
        if not recs:
            continue
        print(f"   slowest {handler} (ms; other = total - {' - '.join(parts)}):")
        for r, proc in recs:
            other = r["total"] - sum(r.get(k, 0.0) for k in parts)
            inner = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in r.items()
                              if k not in ("t", "total"))
            print(f"     {r['total'] * 1e3:8.1f} @{r['t'] - t0:5.2f}s {proc}: {inner}, "
                  f"other {other * 1e3:.1f}")
    stalls = sorted(((s, d["process"]) for d in detail for s in d.get("stalls", [])),
                    key=lambda x: -x[0]["late_s"])
    for s, proc in stalls[:top]:
        print(f"   stall {proc} {s['late_s'] * 1e3:.0f} ms late @{s['t'] - t0:.2f}s"
              f"{' (in GC)' if s['in_gc'] else ''}: " + " <- ".join(
                  f.rsplit("/", 1)[-1] for f in reversed(s["stack"][-6:])))
