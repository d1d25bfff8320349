"""dodoor.service.metrics: weighted histograms, collectors, and messages counted by direction."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dodoor.messages import MessageCounter
from dodoor.service.metrics import (CounterCollector, GaugeCollector, Histogram, MessageCollector,
                            daemon_registry)


def samples(registry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_histogram_buckets_are_cumulative_with_le_semantics():
    h = Histogram([0.1, 1.0])
    h.observe(0.1)  # equal to a bound: in that bucket ("le")
    h.observe(0.5, count=3)  # one call, three observations (a batch)
    h.observe(7.0)
    h.observe(-2.0)  # a clock step: reads as 0, never a negative latency
    h.observe(math.nan)
    h.observe(1.0, count=0)
    assert h.count == 6
    assert h.sum == pytest.approx(0.1 + 1.5 + 7.0)
    got = samples(daemon_registry(_One(h)))
    assert got[("t_seconds_bucket", (("le", "0.1"),))] == 2
    assert got[("t_seconds_bucket", (("le", "1.0"),))] == 5
    assert got[("t_seconds_bucket", (("le", "+Inf"),))] == 6
    assert got[("t_seconds_count", ())] == 6


def test_histogram_needs_finite_buckets():
    with pytest.raises(ValueError):
        Histogram([])
    with pytest.raises(ValueError):
        Histogram([1.0, math.inf])


class _One:
    def __init__(self, h: Histogram) -> None:
        self.h = h

    def collect(self):
        yield self.h.family("t_seconds", "a test histogram")


def test_messages_are_exported_by_direction_and_totals_stay_whole():
    counter = MessageCounter()
    counter.sent("enqueue", 3)
    counter.received("snapshot")
    counter.received("enqueue")
    counter.add("probe")  # the simulator's undirected count: in the totals only
    assert counter.counts == {"enqueue": 4, "snapshot": 1, "probe": 1}
    got = samples(daemon_registry(MessageCollector(counter)))
    mine = {k: v for k, v in got.items() if k[0] == "dodoor_messages_total"}
    assert mine == {
        ("dodoor_messages_total", (("direction", "sent"), ("type", "enqueue"))): 3,
        ("dodoor_messages_total", (("direction", "received"), ("type", "enqueue"))): 1,
        ("dodoor_messages_total", (("direction", "received"), ("type", "snapshot"))): 1,
    }
    with pytest.raises(ValueError, match="direction"):
        counter.add("enqueue", direction="sideways")
    assert counter.counts["enqueue"] == 4  # a refused count changes nothing
    other = MessageCounter()
    other.merge(counter)
    assert other.by_direction["sent"] == {"enqueue": 3}


def test_registry_has_the_default_process_metrics():
    got = samples(daemon_registry())
    names = {name for name, _ in got}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes",
            "process_start_time_seconds", "python_info"} <= names


def test_counter_and_gauge_collectors_read_at_scrape_time():
    value = {"n": 1}
    registry = daemon_registry(
        CounterCollector({"x_things_total": ("things", lambda: value["n"])}),
        GaugeCollector({"x_level": ("level", lambda: value["n"] * 2),
                        "x_absent": ("left out while unknown", lambda: None)}))
    value["n"] = 5
    got = samples(registry)
    assert got[("x_things_total", ())] == 5
    assert got[("x_level", ())] == 10
    assert not any(name == "x_absent" for name, _ in got)
    with pytest.raises(ValueError, match="_total"):
        CounterCollector({"x_things": ("no suffix", lambda: 0)})
