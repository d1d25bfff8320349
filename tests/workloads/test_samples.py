"""The samples shipped in workloads/data load with their documented sizes and sane values."""

from pathlib import Path

import pytest

from workloads.dodoor_csv import bundled_trace
from workloads.registry import detect_format, load_trace

DATA = Path(__file__).resolve().parents[2] / "workloads" / "data"


@pytest.mark.parametrize("name, cap_ms", [("azure_data_60.csv", 60_000), ("azure_data_600.csv", 600_000)])
def test_packing_derived_csvs(name, cap_ms):
    tasks = load_trace(bundled_trace(name))
    assert len(tasks) == 10_000
    assert len({t.task_id for t in tasks}) == 10_000
    assert all(0 < t.cores <= 28 and 0 < t.memory_mb <= 128 * 1024 for t in tasks)
    assert all(0 < t.duration_ms <= cap_ms for t in tasks)
    arrivals = [t.arrival_ms for t in tasks]
    assert arrivals == sorted(arrivals) and arrivals[0] >= 0
    # About 10 arrivals per second, as documented.
    rate = len(tasks) / ((arrivals[-1] - arrivals[0]) / 1000)
    assert 8 < rate < 12


def test_invocations_sample():
    path = DATA / "invocations_sample.csv"
    assert detect_format(path) == "functions"
    tasks = load_trace(path, seed=1)
    # 9 functions; 1061 invocations over the day (counted from the file by hand).
    assert len(tasks) == 1061
    assert len({t.labels["function"] for t in tasks}) == 9
    assert {t.labels["trigger"] for t in tasks} == {"http", "orchestration"}
    assert all(0 <= t.arrival_ms < 1440 * 60_000 for t in tasks)
    # Column 266 of the file reads 0,0,1,1,1,1,0,1,11: six functions, 16 invocations.
    minute = load_trace(path, minutes=(266, 266), spread="even")
    assert len(minute) == 16
    assert len({t.labels["function"] for t in minute}) == 6
    assert all(0 <= t.arrival_ms < 60_000 for t in minute)
    assert sum(1 for t in tasks if 265 * 60_000 <= t.arrival_ms < 266 * 60_000) == 16
