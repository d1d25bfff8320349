"""Prequal: an asynchronous probe pool with the hot/cold selection rule.

After each placement the scheduler probes ``probe_rate`` random nodes; replies
(task count as requests-in-flight, pending duration as the latency estimate)
enter a bounded pool. To place, probes older than ``probe_max_age_ms`` and
nodes that cannot hold the task are skipped; a probe whose RIF is above the
``hot_quantile`` of the pool is hot; the coldest-latency cold probe wins, or the
lowest RIF when all are hot. A used probe is charged the task and retired after
``probe_reuse`` uses. An empty pool falls back to a random feasible node.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from dodoor.cache import PENDING, TASKS, CandidateView
from dodoor.policies.base import PolicyKind, SampledPolicy
from dodoor.resources import Task, fits
from dodoor.sampling import FeasibleSampler
from dodoor.settings import PolicySettings


@dataclass(slots=True)
class _Probe:
    node: int
    rif: float
    latency: float
    received_ms: float
    uses: int = 0


class PrequalPolicy(SampledPolicy):
    kind = PolicyKind.POOL
    default_name = "prequal"
    samples = 1  # the fallback when the pool has nothing usable

    def __init__(self, settings: PolicySettings, name: str | None = None) -> None:
        super().__init__(settings, name)
        self._pool: list[_Probe] = []
        self._credit = 0.0

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        return int(view.nodes[0])

    @property
    def pool_size(self) -> int:
        return len(self._pool)

    def place_from_pool(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, now_ms: float,
        rng: random.Random,
    ) -> int:
        max_age = self.settings.probe_max_age_ms
        self._pool = [p for p in self._pool if now_ms - p.received_ms <= max_age]
        usable = [p for p in self._pool if bool(fits(demand, sampler.capacity[p.node]))]
        if not usable:
            return sampler.sample(demand, 1, rng)[0]
        rifs = np.array([p.rif for p in usable])
        threshold = float(np.quantile(rifs, self.settings.hot_quantile))
        cold = [p for p in usable if p.rif <= threshold]
        if cold:
            best = min(p.latency for p in cold)
            picks = [p for p in cold if p.latency <= best]
        else:
            best = min(p.rif for p in usable)
            picks = [p for p in usable if p.rif <= best]
        probe = picks[rng.randrange(len(picks))] if len(picks) > 1 else picks[0]
        probe.uses += 1
        probe.rif += 1.0
        probe.latency += task.duration_ms
        if probe.uses >= self.settings.probe_reuse:
            self._pool.remove(probe)
        return probe.node

    def probe_targets(self, sampler: FeasibleSampler, rng: random.Random) -> list[int]:
        self._credit += self.settings.probe_rate
        count = int(self._credit)
        self._credit -= count
        return sampler.sample_any(count, rng)

    def on_probe_reply(self, node: int, state: np.ndarray, now_ms: float) -> None:
        self._pool = [p for p in self._pool if p.node != node]
        self._pool.append(_Probe(node, float(state[TASKS]), float(state[PENDING]), now_ms))
        if len(self._pool) > self.settings.pool_size:
            self._pool.pop(0)
