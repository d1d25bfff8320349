"""Prometheus export shared by the three daemons (docs/operations.md lists the metrics).

* :func:`daemon_registry` — a registry with prometheus-client's default process,
  platform and GC collectors, so every daemon exports ``process_*`` like any
  other Prometheus target. Each app gets its own registry: several apps in one
  process (the tests) never collide.
* :class:`Histogram` — buckets filled by ``observe(value, count)``. A batch of n
  tasks placed by one request is one call, not n, which keeps the submit path's
  cost per task flat; prometheus-client's own histogram has no weights.
* :class:`MessageCollector` — ``dodoor_messages_total{direction, type}`` from a
  :class:`~dodoor.messages.MessageCounter`, the same family on every daemon.
* :class:`GaugeCollector` / :class:`CounterCollector` — single values read at
  scrape time from callables, so nothing has to be kept in step by hand.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.registry import Collector

from dodoor.messages import DIRECTIONS, MessageCounter

# Bucket bounds in seconds, chosen per quantity: placement is sub-millisecond on a
# quiet scheduler, a snapshot may legitimately be minutes old under a trickle of
# work, and tasks run from milliseconds (sleep executor) to hours.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
SNAPSHOT_AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                        1800.0)
QUEUE_WAIT_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
RUN_TIME_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)


def daemon_registry(*collectors: Collector) -> CollectorRegistry:
    """A fresh registry holding the default process/platform/GC collectors and ``collectors``."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


class Histogram:
    """Cumulative buckets (``le`` semantics) plus sum and count, in seconds.

    Plain data with no lock: the daemons observe and scrape on one event loop.
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or any(math.isinf(b) or math.isnan(b) for b in bounds):
            raise ValueError("histogram buckets must be finite and non-empty (+Inf is implied)")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observe(self, value: float, count: int = 1) -> None:
        """Record ``count`` observations of ``value`` seconds (negative reads as 0)."""
        if count <= 0 or math.isnan(value):
            return
        value = max(0.0, float(value))  # a clock step must not make a negative latency
        # bisect_left: a value equal to a bound belongs to that bucket (le = "<=")
        self.counts[bisect.bisect_left(self.bounds, value)] += count
        self.sum += value * count

    def add_to(self, family: HistogramMetricFamily, labels: Sequence[str] = ()) -> None:
        """Add this histogram as one sample set of ``family``."""
        cumulative, buckets = 0, []
        for bound, n in zip(self.bounds, self.counts):
            cumulative += n
            buckets.append((_le(bound), cumulative))
        buckets.append(("+Inf", cumulative + self.counts[-1]))
        family.add_metric(list(labels), buckets, self.sum)

    def family(self, name: str, help_text: str) -> HistogramMetricFamily:
        """This histogram as an unlabelled family ``name`` (``_bucket``/``_sum``/``_count``)."""
        family = HistogramMetricFamily(name, help_text)
        self.add_to(family)
        return family


def _le(bound: float) -> str:
    # Prometheus' own clients print bounds as floats ("1.0", "0.005")
    return repr(float(bound))


class MessageCollector(Collector):
    """``dodoor_messages_total{direction, type}``: messages this daemon sent and received.

    Every wire message is counted at both ends, once as ``sent`` by its sender and
    once as ``received`` by its receiver, so a cluster total takes one direction.
    """

    def __init__(self, counter: MessageCounter) -> None:
        self._counter = counter

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("dodoor_messages", "Wire messages by direction and type",
                                     labels=["direction", "type"])
        for direction in DIRECTIONS:
            for kind, count in sorted(self._counter.by_direction[direction].items()):
                family.add_metric([direction, kind], count)
        yield family


class GaugeCollector(Collector):
    """Gauges read at scrape time: ``{name: (help, fn)}``; a fn returning None is left out."""

    def __init__(self, gauges: Mapping[str, tuple[str, Callable[[], float | None]]]) -> None:
        self._gauges = dict(gauges)

    def collect(self) -> Iterable[Metric]:
        for name, (help_text, read) in self._gauges.items():
            value = read()
            if value is not None:
                yield GaugeMetricFamily(name, help_text, value=float(value))


class CounterCollector(Collector):
    """Counters read at scrape time: ``{name: (help, fn)}`` with ``name`` ending in ``_total``.

    The callables must only ever grow (within one process life), as Prometheus
    takes any decrease for a restart.
    """

    def __init__(self, counters: Mapping[str, tuple[str, Callable[[], float]]]) -> None:
        for name in counters:
            if not name.endswith("_total"):
                raise ValueError(f"counter {name!r} must end in _total")
        self._counters = dict(counters)

    def collect(self) -> Iterable[Metric]:
        for name, (help_text, read) in self._counters.items():
            yield CounterMetricFamily(name.removesuffix("_total"), help_text, value=float(read()))
