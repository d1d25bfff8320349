"""Message attribution, task scaling and the function mix."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from dodoor.resources import Task
from dodoor.tools.metrics_scrape import cluster_counts, difference, parse_messages
from dodoor.tools.replay import is_loopback, scale_tasks
from workloads.function_mix import (
    DEFAULT_MIX, MEMORY_HEADROOM, apply_function_mix, load_profile, parse_mix,
)

EXPOSITION = """# HELP dodoor_messages_total Wire messages by direction and type
# TYPE dodoor_messages_total counter
dodoor_messages_total{direction="received",type="enqueue"} 5.0
dodoor_messages_total{type="enqueue",direction="received"} 2.0
dodoor_messages_total{direction="sent",type="node_state"} 30.0
dodoor_messages_created{direction="received",type="enqueue"} 1.7e+09
dodoor_messages_total{direction="sent",type="probe_reply"} 4.0
dodoor_messages_total{direction="received",type="probe"} 4.0
"""
# what agents exported before messages had a direction (an older cluster)
OLD_EXPOSITION = """dodoor_agent_messages_total{node="n1",type="enqueue"} 7.0
dodoor_messages_total{type="probe"} 4.0
"""


def test_parse_messages_reads_any_label_order_and_skips_created():
    # a component's count of a type is both directions: what it sent and received
    assert parse_messages(EXPOSITION) == {"enqueue": 7, "node_state": 30, "probe_reply": 4,
                                          "probe": 4}
    assert parse_messages(OLD_EXPOSITION) == {"enqueue": 7, "probe": 4}


def test_each_type_counted_at_its_sender_else_receiver():
    by_role = {"scheduler": Counter(enqueue=10, probe_reply=6, snapshot=3, deltas=2),
               "agent": Counter(enqueue=10, probe_reply=6, node_state=40),
               "loadstore": Counter(snapshot=3, deltas=2, node_state=39)}
    assert cluster_counts(by_role) == {"enqueue": 10, "probe_reply": 6, "snapshot": 3,
                                       "deltas": 2, "node_state": 40}
    # without agents, their messages are read at the receivers
    no_agents = {k: v for k, v in by_role.items() if k != "agent"}
    assert cluster_counts(no_agents) == {"enqueue": 10, "probe_reply": 6, "snapshot": 3,
                                         "deltas": 2, "node_state": 39}


def test_difference_per_role():
    after = {"scheduler": Counter(enqueue=15, snapshot=4)}
    before = {"scheduler": Counter(enqueue=5)}
    assert difference(after, before) == {"scheduler": {"enqueue": 10, "snapshot": 4}}


def test_only_loopback_urls():
    assert is_loopback("http://127.0.0.1:8200") and is_loopback("http://localhost:1")
    assert not is_loopback("http://agent-0:8200") and not is_loopback("http://10.0.0.2:80")


def test_scale_tasks():
    tasks = [Task("a", 1, 1, duration_ms=1000.0, arrival_ms=500.0),
             Task("b", 1, 1, duration_ms=0.5, arrival_ms=2500.0)]
    out = scale_tasks(tasks, speedup=4.0, duration_scale=0.1, prefix="r-")
    assert [(t.task_id, t.arrival_ms, t.duration_ms) for t in out] == [
        ("r-a", 0.0, 100.0), ("r-b", 500.0, 1.0)]
    with pytest.raises(ValueError):
        scale_tasks(tasks, speedup=0.0)


def test_bundled_profile_has_the_three_classes():
    profile = load_profile()
    assert set(profile) == {"short", "medium", "long"}
    assert profile["short"].duration_ms < profile["long"].duration_ms


def test_parse_mix():
    assert parse_mix(None) == dict(DEFAULT_MIX)
    assert parse_mix("short=1,long=3") == {"short": 0.25, "long": 0.75}
    with pytest.raises(Exception):
        parse_mix("short=-1")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 1000))
def test_mix_keeps_ids_and_arrivals_and_uses_profiled_demands(n, seed):
    profile = load_profile()
    tasks = [Task(f"t{i}", 8.0, 9000.0, 50.0, 60000.0, arrival_ms=float(i)) for i in range(n)]
    out = apply_function_mix(tasks, profile, seed=seed)
    assert [(t.task_id, t.arrival_ms) for t in out] == [(t.task_id, t.arrival_ms) for t in tasks]
    for t in out:
        cls = profile[t.labels["function_class"]]
        assert (t.function, t.command, t.duration_ms) == (cls.function, cls.args, cls.duration_ms)
        assert cls.memory_mb * MEMORY_HEADROOM <= t.memory_mb < cls.memory_mb * MEMORY_HEADROOM + 1
    assert out == apply_function_mix(tasks, profile, seed=seed)  # seeded


def test_mix_proportions_follow_the_weights():
    tasks = [Task(f"t{i}", 1.0, 1.0, arrival_ms=float(i)) for i in range(6000)]
    got = Counter(t.labels["function_class"] for t in apply_function_mix(tasks, load_profile()))
    for name, weight in DEFAULT_MIX.items():
        assert abs(got[name] / 6000 - weight) < 0.03
