"""Follow many no-op tasks to completion with dodoor.client; print requests per task.

Starts a local cluster (``dodoor cluster up``'s processes: one load store,
``--schedulers`` schedulers, ``--agents`` sleep-executor agents on 127.0.0.1),
submits ``--tasks`` tasks of ``--duration-ms`` each with ``Client.submit_many``,
follows them with ``as_completed`` (the batch status call with its long poll), and
prints how many HTTP requests the client made per task and the tasks per second.

Usage: python benchmarks/client_follow.py [--tasks 10000] [--agents 4] [--schedulers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dodoor.client import Client  # noqa: E402
from dodoor.tools.localcluster import ClusterSettings, LocalCluster  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--schedulers", type=int, default=2)
    ap.add_argument("--duration-ms", type=float, default=1.0)
    ap.add_argument("--base-port", type=int, default=18090)
    ap.add_argument("--poll-interval", type=float, default=0.5)
    args = ap.parse_args(argv)
    if args.tasks < 1:
        ap.error(f"--tasks must be >= 1, got {args.tasks}")
    workdir = Path(tempfile.mkdtemp(prefix="dodoor-client-follow-"))
    settings = ClusterSettings(agents=args.agents, schedulers=args.schedulers,
                               base_port=args.base_port, workdir=workdir)
    with LocalCluster(settings) as cluster:
        with Client(cluster.scheduler_urls, poll_interval=args.poll_interval) as client:
            started = time.monotonic()
            handles = client.submit_many({"cores": 0.1, "memory_mb": 16,
                                          "duration_ms": args.duration_ms}
                                         for _ in range(args.tasks))
            submitted = time.monotonic()
            submit_requests = client.requests
            states = Counter(h.last["state"] for h in client.as_completed(handles))
            ended = time.monotonic()
            follow_requests = client.requests - submit_requests
    n = args.tasks
    print(f"tasks {n}  agents {args.agents}  schedulers {args.schedulers}  states {dict(states)}")
    print(f"submit: {submit_requests} requests in {submitted - started:.2f} s")
    print(f"follow: {follow_requests} requests in {ended - submitted:.2f} s")
    print(f"requests per task: {(submit_requests + follow_requests) / n:.4f}  "
          f"(following only: {follow_requests / n:.4f})")
    print(f"tasks per second: {n / (ended - started):.1f}")
    return 0 if states.get("succeeded") == n else 1


if __name__ == "__main__":
    sys.exit(main())
