"""The placement paths, one per policy kind, behind :class:`~scheduler.paths.base.PlacementPath`.

They import nothing of :mod:`scheduler.placer`, which holds one of them
(``tests/daemons/test_paths.py`` and the ``paths-below-placer`` import contract).
"""

from __future__ import annotations

import random

from dodoor.clock import Clock
from dodoor.policies import PolicyKind
from dodoor.service.http import BackgroundTasks
from dodoor.service.peers import PeerClient
from scheduler.fallback import FallbackWindow
from scheduler.paths.base import CachedDeltas, PlacementPath
from scheduler.paths.cached import CachedPath
from scheduler.paths.forwarder import Forwarder
from scheduler.paths.pool import PoolPath
from scheduler.paths.probing import ProbingPath
from scheduler.paths.reservation import ReservationPath
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView


def make_path(policy, settings: SchedulerSettings, view: ClusterView, peers: PeerClient,
              forwarder: Forwarder, deltas: CachedDeltas, reserving: ReservationPath,
              background: BackgroundTasks, rng: random.Random, clock: Clock,
              fallback: FallbackWindow | None = None) -> PlacementPath:
    """The path of ``policy``'s kind (``reserving`` is the RESERVE kind's, built by the
    placer because it answers confirms whatever the kind; ``fallback``, the packing
    fallback's window, only a CACHED policy's path takes)."""
    kind = policy.kind
    if kind is PolicyKind.RESERVE:
        return reserving
    if kind is PolicyKind.PROBE:
        return ProbingPath(policy, settings.scheduler_id, view, peers, forwarder, rng)
    if kind is PolicyKind.POOL:
        return PoolPath(settings, view, peers, background, rng, clock)
    return CachedPath(policy, view, deltas, rng, fallback, forwarder)
