"""The chaos test's faults: seeded rounds of SIGKILL, SIGSTOP and restarts of real processes.

Kinds:

* ``agent-kill``: SIGKILL an agent, then restart it on its journal (same port);
* ``agent-stop``: SIGSTOP an agent for longer than the schedulers' enqueue
  timeout, then SIGCONT;
* ``scheduler-kill``: SIGKILL a scheduler, restart it with the same id and port;
* ``loadstore-kill``: SIGKILL the load store, restart it on the same port.

Every fault records its target, its times and the ledger's size just before it
strikes and once the target is back (:class:`Fault`), so the checks can tell
which task copies it hit.
"""

from __future__ import annotations

import http.client
import logging
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from tests.faults.chaos_ledger import Ledger
from tests.faults.conftest import ProcCluster

log = logging.getLogger(__name__)

KINDS = ("agent-kill", "agent-stop", "scheduler-kill", "loadstore-kill")
# after the first round of each kind: agent faults are what hit running tasks
WEIGHTS = {"agent-kill": 0.35, "agent-stop": 0.25, "scheduler-kill": 0.2, "loadstore-kill": 0.2}
ROUND_BUDGET_S = 5.0  # no new round starts with less time left than this
RECOVERY_TIMEOUT_S = 20.0


@dataclass
class Fault:
    kind: str
    target: str  # node-2, sched-1, loadstore
    t0: float  # seconds since the fault rounds began
    t1: float = 0.0  # when the target was serving again
    ledger0: int = 0  # ledger bytes just before the fault
    ledger1: int = 0  # ledger bytes once the target was back
    lines0: int = 0  # ledger lines just before the signal was sent
    # ledger lines once the signalled process was gone (SIGKILL) or stopped: a task
    # may start between reading lines0 and the signal landing, so the kill's
    # offset is known to lie in lines0..lines_hit only
    lines_hit: int = 0
    detail: str = ""

    def describe(self) -> str:
        at = (f"{self.lines0}" if self.lines_hit <= self.lines0
              else f"{self.lines0}..{self.lines_hit}")
        return (f"{self.kind} {self.target} at {self.t0:.1f}s..{self.t1:.1f}s, "
                f"ledger line {at}{' ' + self.detail if self.detail else ''}")


@dataclass
class FaultInjector:
    """Runs seeded fault rounds on a :class:`ProcCluster` until a deadline."""

    cluster: ProcCluster
    ledger: Ledger
    rng: random.Random
    enqueue_timeout_ms: float
    t0: float = field(default_factory=time.monotonic)
    faults: list[Fault] = field(default_factory=list)
    progress: Callable[[str], None] = print

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self, duration_s: float, stop_when: Callable[[], bool] = lambda: False) -> None:
        """Fault rounds for ``duration_s``: each kind once first (shuffled), then weighted."""
        first = list(KINDS)
        self.rng.shuffle(first)
        deadline = time.monotonic() + duration_s
        while time.monotonic() + ROUND_BUDGET_S < deadline and not stop_when():
            time.sleep(self.rng.uniform(0.8, 2.0))  # let the cluster work between faults
            kind = first.pop(0) if first else self.rng.choices(
                list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
            fault = getattr(self, "_" + kind.replace("-", "_"))()
            self.faults.append(fault)
            self.progress(f"round {len(self.faults):3d} {fault.describe()}")

    def _begin(self, kind: str, target: str) -> Fault:
        size = self.ledger.size()
        return Fault(kind, target, self.now(), ledger0=size, lines0=self.ledger.lines_within(size))

    def _hit(self, fault: Fault) -> None:
        fault.lines_hit = self.ledger.lines_within(self.ledger.size())

    def _end(self, fault: Fault) -> Fault:
        fault.t1 = self.now()
        fault.ledger1 = self.ledger.size()
        return fault

    def _agent_kill(self) -> Fault:
        i = self.rng.randrange(len(self.cluster.agents))
        fault = self._begin("agent-kill", f"node-{i}")
        self.cluster.kill(self.cluster.agents[i])  # returns once the process is gone
        self._hit(fault)
        down = self.rng.uniform(0.1, 0.8)
        time.sleep(down)
        self.cluster.restart_agent(i)  # waits for /healthz
        fault.detail = f"(down {down:.1f}s before the restart)"
        return self._end(fault)

    def _agent_stop(self) -> Fault:
        i = self.rng.randrange(len(self.cluster.agents))
        held = self.enqueue_timeout_ms / 1000.0 + self.rng.uniform(0.5, 1.5)
        fault = self._begin("agent-stop", f"node-{i}")
        proc = self.cluster.agents[i].proc
        proc.send_signal(signal.SIGSTOP)
        self._hit(fault)
        try:
            time.sleep(held)
        finally:
            proc.send_signal(signal.SIGCONT)
        fault.detail = f"(stopped {held:.1f}s; enqueue timeout {self.enqueue_timeout_ms:g} ms)"
        return self._end(fault)

    def _scheduler_kill(self) -> Fault:
        i = self.rng.randrange(len(self.cluster.schedulers))
        fault = self._begin("scheduler-kill", f"sched-{i}")
        self.cluster.kill(self.cluster.schedulers[i])
        self._hit(fault)
        down = self.rng.uniform(0.1, 0.6)
        time.sleep(down)
        sched = self.cluster.restart_scheduler(i)
        seen = self._wait_nodes(sched.url)
        fault.detail = f"(down {down:.1f}s; sees {seen} node(s) after the restart)"
        return self._end(fault)

    def _loadstore_kill(self) -> Fault:
        fault = self._begin("loadstore-kill", "loadstore")
        self.cluster.kill(self.cluster.loadstore)
        self._hit(fault)
        down = self.rng.uniform(0.2, 1.0)
        time.sleep(down)
        store = self.cluster.restart_loadstore()
        seen = self._wait_nodes(store.url)
        fault.detail = f"(down {down:.1f}s; {seen} node(s) registered again)"
        return self._end(fault)

    def _wait_nodes(self, url: str) -> int:
        """Wait (bounded) until ``url`` knows every agent again; how many it knows."""
        want = len(self.cluster.agents)
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        seen = 0
        while time.monotonic() < deadline:
            try:
                seen = len(self.cluster.node_ids(url))
            except (OSError, AssertionError, http.client.HTTPException, ValueError, KeyError):
                seen = 0  # not serving yet
            if seen >= want:
                break
            time.sleep(0.1)
        if seen < want:
            log.warning("%s knows %d of %d nodes after %.0f s", url, seen, want,
                        RECOVERY_TIMEOUT_S)
        return seen
