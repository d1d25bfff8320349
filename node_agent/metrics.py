"""Prometheus metrics of one agent, read from its live objects at scrape time.

A collector (rather than gauges updated in place) keeps the numbers exactly in
step with the queue and the message counter, and lives in the app's own
registry so several agents in one process (tests) never collide. Quantities
are in base units (bytes, seconds), one unit per metric name; the agent's
MiB and milliseconds are converted here. docs/operations.md explains each one.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.registry import Collector

from dodoor.cache import PENDING, TASKS
from dodoor.service.metrics import Histogram, MessageCollector, daemon_registry
from dodoor.taskstates import STATES, TERMINAL
from node_agent.node import NodeAgent
from node_agent.queue import RESERVATION
from node_agent.reporter import Reporter

MIB = 1024 * 1024  # the agent's memory and disk figures are MiB (node_agent.settings)
# terminal states this process counts, in a fixed order (``lost``: ended by a fence,
# docs/guarantees.md)
ENDED_STATES = tuple(state for state in STATES if state in TERMINAL)


class AgentCollector(Collector):
    """Queue, committed load, capacity, terminal states, timings and reporting of one agent."""

    def __init__(self, agent: NodeAgent, reporter: Reporter | None = None) -> None:
        self.agent = agent
        self.reporter = reporter

    def _gauge(self, name: str, help_text: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, help_text, labels=["node"])
        family.add_metric([self.agent.node_id], float(value))
        return family

    def _counter(self, name: str, help_text: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(name, help_text, labels=["node"])
        family.add_metric([self.agent.node_id], float(value))
        return family

    def collect(self) -> Iterator[Metric]:
        agent, gauge = self.agent, self._gauge
        queue = agent.queue
        yield gauge("dodoor_agent_queue_length", "Entries waiting to start", queue.n_waiting)
        yield gauge("dodoor_agent_running", "Entries running or holding resources",
                    queue.n_running)
        yield gauge("dodoor_agent_reservations", "Sparrow reservations held",
                    sum(1 for e in queue.waiting if e.kind == RESERVATION)
                    + sum(1 for e in queue.running if e.kind == RESERVATION))
        state = agent.state()
        cores, memory_mb, disk_mb = state[:3]
        yield gauge("dodoor_agent_committed_cores", "Cores asked for by queued and running tasks",
                    cores)
        yield gauge("dodoor_agent_committed_memory_bytes",
                    "Memory asked for by queued and running tasks", memory_mb * MIB)
        yield gauge("dodoor_agent_committed_disk_bytes",
                    "Disk asked for by queued and running tasks", disk_mb * MIB)
        yield gauge("dodoor_agent_committed_tasks", "Queued and running entries", state[TASKS])
        yield gauge("dodoor_agent_pending_work_seconds",
                    "Estimated work ahead: queued durations plus what running tasks have left",
                    state[PENDING] / 1000.0)
        cap_cores, cap_memory_mb, cap_disk_mb = queue.capacity
        yield gauge("dodoor_agent_capacity_cores", "Cores this agent offers", cap_cores)
        yield gauge("dodoor_agent_capacity_memory_bytes", "Memory this agent offers",
                    cap_memory_mb * MIB)
        yield gauge("dodoor_agent_capacity_disk_bytes", "Disk this agent offers",
                    cap_disk_mb * MIB)
        yield gauge("dodoor_agent_slots", "Tasks this agent runs at once", queue.slots)

        ended = CounterMetricFamily("dodoor_agent_tasks", "Tasks that reached a terminal state",
                                    labels=["node", "state"])
        for name in ENDED_STATES:
            ended.add_metric([agent.node_id, name], agent.finished[name])
        yield ended
        yield self._counter("dodoor_agent_fences", "Times this node's life was declared dead "
                            "and fenced", agent.fences)
        yield self._counter("dodoor_agent_preemptions", "Running tasks stopped and requeued "
                            "for a higher-class task (--preempt)", agent.preemption.count)
        yield self._histogram("dodoor_agent_queue_wait_seconds",
                              "From a task's arrival to its start", agent.queue_wait)
        yield self._histogram("dodoor_agent_task_run_seconds", "From a task's start to its end",
                              agent.run_time)
        if self.reporter is not None:
            yield self._counter("dodoor_agent_report_failures",
                                "State reports the load store did not take",
                                self.reporter.failures)
            # unknown until the first report was tried: left out rather than guessed
            if self.reporter.reachable is not None:
                yield gauge("dodoor_agent_loadstore_reachable",
                            "1 while the load store takes this agent's reports",
                            self.reporter.reachable)

    def _histogram(self, name: str, help_text: str,
                   histogram: Histogram) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, help_text, labels=["node"])
        histogram.add_to(family, [self.agent.node_id])
        return family


def make_registry(agent: NodeAgent, reporter: Reporter | None) -> CollectorRegistry:
    """The agent app's registry: process metrics, messages and :class:`AgentCollector`."""
    return daemon_registry(MessageCollector(agent.counter), AgentCollector(agent, reporter))
