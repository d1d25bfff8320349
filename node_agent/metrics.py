"""Prometheus metrics of one agent, read from its live objects at scrape time.

A collector (rather than gauges updated in place) keeps the numbers exactly in
step with the queue and the message counter, and lives in the app's own
registry so several agents in one process (tests) never collide.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dodoor.cache import STATE_COLUMNS
from node_agent.node import NodeAgent
from node_agent.queue import RESERVATION
from node_agent.reporter import Reporter


class AgentCollector(Collector):
    """Queue length, running tasks, terminal states, messages, committed load."""

    def __init__(self, agent: NodeAgent, reporter: Reporter | None = None) -> None:
        self.agent = agent
        self.reporter = reporter

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        labels = ["node"]
        node = [agent.node_id]
        queued = GaugeMetricFamily("dodoor_agent_queue_length", "Entries waiting to start", labels=labels)
        queued.add_metric(node, agent.queue.n_waiting)
        yield queued
        running = GaugeMetricFamily("dodoor_agent_running", "Entries running or holding resources",
                                    labels=labels)
        running.add_metric(node, agent.queue.n_running)
        yield running
        reservations = GaugeMetricFamily("dodoor_agent_reservations", "Sparrow reservations held",
                                         labels=labels)
        reservations.add_metric(node, sum(1 for e in agent.queue.waiting if e.kind == RESERVATION)
                                + sum(1 for e in agent.queue.running if e.kind == RESERVATION))
        yield reservations
        ended = CounterMetricFamily("dodoor_agent_tasks", "Tasks that reached a terminal state",
                                    labels=["node", "state"])
        for state in ("succeeded", "failed"):
            ended.add_metric([agent.node_id, state], agent.finished[state])
        yield ended
        messages = CounterMetricFamily("dodoor_agent_messages", "Messages sent or received by type",
                                       labels=["node", "type"])
        for kind, n in sorted(agent.counter.counts.items()):
            messages.add_metric([agent.node_id, kind], n)
        yield messages
        committed = GaugeMetricFamily("dodoor_agent_committed", "Committed load (queued + running)",
                                      labels=["node", "resource"])
        for name, value in zip(STATE_COLUMNS, agent.state()):
            committed.add_metric([agent.node_id, name], float(value))
        yield committed
        if self.reporter is not None:
            failures = CounterMetricFamily("dodoor_agent_report_failures",
                                           "State reports the load store did not take", labels=labels)
            failures.add_metric(node, self.reporter.failures)
            yield failures


def make_registry(agent: NodeAgent, reporter: Reporter | None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(AgentCollector(agent, reporter))
    return registry
