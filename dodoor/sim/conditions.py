"""The realistic-conditions options shared by ``dodoor simulate`` and ``dodoor sweep``.

Wrong duration estimates, bursty arrivals and rebalancing of queued work
(docs/simulator.md, "Realistic conditions"); the number of schedulers has its
own ``--schedulers`` option. Parsed once into the keyword arguments of
:class:`dodoor.sim.settings.SimSettings`.
"""

from __future__ import annotations

import argparse
from typing import Any

from dodoor.sim.arrivals import Bursts
from dodoor.sim.settings import REBALANCE_MODES, SimSettings

ARRIVALS = ("steady", "bursty")


def add_condition_args(p: argparse.ArgumentParser) -> None:
    """Add ``--estimate-sigma``, ``--arrivals``, ``--burst-ms`` and ``--rebalance``."""
    p.add_argument("--estimate-sigma", type=float, default=0.0, metavar="S",
                   help="declared durations are the true ones times exp(S*Z), Z standard "
                        "normal, seeded; schedulers and agents see the declaration, tasks run "
                        "their true duration, the ideal knows it (default %(default)s: exact)")
    p.add_argument("--arrivals", choices=ARRIVALS, default="steady",
                   help="steady: the trace's own arrival pattern; bursty: an on/off process "
                        "with the same mean load (default %(default)s)")
    p.add_argument("--burst-ms", default="10000/30000", metavar="ON/OFF",
                   help="mean ON and OFF period lengths of --arrivals bursty, exponential, "
                        "in ms (default %(default)s: bursts at 4x the mean rate)")
    p.add_argument("--rebalance", choices=REBALANCE_MODES, default="none",
                   help="steal: the load store moves a queued task to an agent whose report "
                        "shows a free slot (policies with a load store only; a move costs a "
                        "cancel and an enqueue) (default %(default)s)")
    p.add_argument("--rebalance-min-queue", type=int, default=2, metavar="N",
                   help="--rebalance steal takes from nodes with at least N tasks queued by "
                        "the load store's view (default %(default)s)")


def condition_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The SimSettings keyword arguments the options give, checked before any run starts."""
    bursts = Bursts.parse(args.burst_ms) if args.arrivals == "bursty" else None
    out = {"estimate_sigma": args.estimate_sigma, "bursts": bursts, "rebalance": args.rebalance,
           "rebalance_min_queue": args.rebalance_min_queue}
    SimSettings(**out)  # a bad value is one error naming it, not one per sweep worker
    return out
