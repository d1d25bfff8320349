import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dodoor.errors import TraceFormatError, ValidationError
from workloads.functions import load_functions

HEADER = "HashOwner,HashApp,HashFunction,Trigger,1,2,3,4,5"
ROWS = [
    "o1,a1,f1,http,2,0,1,0,0",
    "o1,a1,f2,timer,0,0,0,0,1",
    "o2,a2,f3,queue,1,0,1,0,0",
]
DURATIONS = [
    "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,"
    "percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,"
    "percentile_Average_99,percentile_Average_100",
    "o1,a1,f1,250.5,100,10,900,10,12,100,200,300,800,900",
    "o2,a2,f3,0,5,0,0,40,40,40,40,40,40,40",
]
MEMORY = [
    "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,"
    "AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,"
    "AverageAllocatedMb_pct99,AverageAllocatedMb_pct100",
    "o1,a1,10,130.4,100,101,110,120,140,150,160,170",
]


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def invocations(tmp_path):
    return write(tmp_path, "invocations.csv", [HEADER, *ROWS])


def test_even_spread_exact_arrivals_and_defaults(invocations):
    tasks = load_functions(invocations, spread="even")
    got = [(t.task_id, t.labels["function"], t.arrival_ms) for t in tasks]
    assert got == [
        ("inv-0", "f1", 0.0), ("inv-1", "f3", 0.0), ("inv-2", "f1", 30_000.0),
        ("inv-3", "f1", 120_000.0), ("inv-4", "f3", 120_000.0), ("inv-5", "f2", 240_000.0),
    ]
    assert {(t.cores, t.memory_mb, t.disk_mb, t.duration_ms) for t in tasks} == {(1.0, 256.0, 0.0, 1000.0)}
    assert tasks[5].labels == {"source": "azure-functions2019", "trigger": "timer", "function": "f2"}


def test_minute_range_limit_and_overrides(invocations):
    tasks = load_functions(invocations, spread="even", minutes=(3, 5), cores=0.5,
                           default_duration_ms=20, default_memory_mb=64)
    assert [(t.labels["function"], t.arrival_ms) for t in tasks] == [("f1", 0.0), ("f3", 0.0), ("f2", 120_000.0)]
    assert {(t.cores, t.memory_mb, t.duration_ms) for t in tasks} == {(0.5, 64.0, 20.0)}
    limited = load_functions(invocations, spread="even", limit=2)
    assert [(t.labels["function"], t.arrival_ms) for t in limited] == [("f1", 0.0), ("f3", 0.0)]


def test_random_spread_is_seeded_and_stays_in_its_minute(invocations):
    one = load_functions(invocations, seed=3)
    assert one == load_functions(invocations, seed=3)
    assert [t.arrival_ms for t in one] != [t.arrival_ms for t in load_functions(invocations, seed=4)]
    minutes = sorted(int(t.arrival_ms // 60_000) for t in one)
    assert minutes == [0, 0, 0, 2, 2, 4]
    assert [t.arrival_ms for t in one] == sorted(t.arrival_ms for t in one)


def test_durations_and_memory_files(tmp_path, invocations):
    durations = write(tmp_path, "durations.csv", DURATIONS)
    memory = write(tmp_path, "memory.csv", MEMORY)
    tasks = load_functions(invocations, spread="even", durations=durations, memory=memory)
    by_function = {t.labels["function"]: (t.duration_ms, t.memory_mb) for t in tasks}
    # f3's Average of 0 ms becomes 1 ms; f2 has no durations row; app a2 has no memory row.
    assert by_function == {"f1": (250.5, 131.0), "f2": (1000.0, 131.0), "f3": (1.0, 256.0)}


def test_sampled_durations_follow_the_percentiles(tmp_path):
    invocations = write(tmp_path, "inv.csv", ["HashOwner,HashApp,HashFunction,Trigger,1,2",
                                              "o1,a1,f1,http,4000,0", "o2,a2,f3,http,0,7"])
    durations = write(tmp_path, "durations.csv", DURATIONS)
    tasks = load_functions(invocations, durations=durations, duration_stat="sample", seed=1)
    f1 = [t.duration_ms for t in tasks if t.labels["function"] == "f1"]
    assert len(f1) == 4000 and all(10 <= d <= 900 for d in f1)
    below_median = sum(d <= 200 for d in f1) / len(f1)
    below_p99 = sum(d <= 800 for d in f1) / len(f1)
    assert 0.45 < below_median < 0.55 and 0.98 < below_p99 <= 1.0
    assert {t.duration_ms for t in tasks if t.labels["function"] == "f3"} == {40.0}
    # Durations have their own random stream: a limit does not change them.
    limited = load_functions(invocations, durations=durations, duration_stat="sample", seed=1, limit=50)
    assert limited == tasks[:50]


@pytest.mark.parametrize(
    "lines, line, column, reason",
    [
        ([HEADER, ROWS[0], "o1,a1,f2,timer,0,x,0,0,1"], 3, 6, "minute 2: not an integer"),
        ([HEADER, ROWS[0], "o1,a1,f2,timer,0,0,-4,0,1"], 3, 7, "negative count"),
        ([HEADER, ROWS[0], "o1,a1,f2,timer,0,0"], 3, 7, "expected 9 columns"),
        ([HEADER, "o1,a1,,http,1,0,0,0,0"], 2, 3, "HashFunction: empty"),
        (["HashOwner,App,HashFunction,Trigger,1,2", "o,a,f,http,1,1"], 1, 2, "expected header 'HashApp'"),
        (["HashOwner,HashApp,HashFunction,Trigger,1,3", "o,a,f,http,1,1"], 1, 6, "minute column '2'"),
        (["HashOwner,HashApp,HashFunction,Trigger"], 1, 5, "no minute columns"),
        ([""], 1, 1, "empty file"),
    ],
)
def test_bad_invocation_files(tmp_path, lines, line, column, reason):
    path = write(tmp_path, "bad.csv", lines)
    with pytest.raises(TraceFormatError, match=reason) as info:
        load_functions(path)
    assert (info.value.path, info.value.line, info.value.column) == (str(path), line, column)


@pytest.mark.parametrize(
    "name, lines, kind, line, column",
    [
        ("durations.csv", [DURATIONS[0].replace("Average,", "Mean,", 1), DURATIONS[1]], "durations", 1, "Average"),
        ("durations.csv", [DURATIONS[0], "o1,a1,f1,fast,1,1,1,1,1,1,1,1,1,1"], "durations", 2, 4),
        ("durations.csv", [DURATIONS[0], "o1,a1,f1,5,1,1,1,9,8,7,6,5,4,3"], "durations", 2, "percentile_Average_*"),
        ("memory.csv", [MEMORY[0], "o1,a1,10,-130,1,1,1,1,1,1,1,1"], "memory", 2, 4),
        ("memory.csv", [MEMORY[0], "o1,a1,10"], "memory", 2, 4),
    ],
)
def test_bad_companion_files(tmp_path, invocations, name, lines, kind, line, column):
    path = write(tmp_path, name, lines)
    with pytest.raises(TraceFormatError) as info:
        load_functions(invocations, **{kind: path})
    assert (info.value.path, info.value.line, info.value.column) == (str(path), line, column)


def test_bad_options(invocations):
    with pytest.raises(ValidationError, match="minutes"):
        load_functions(invocations, minutes=(4, 9))
    with pytest.raises(ValidationError, match="spread"):
        load_functions(invocations, spread="poisson")
    with pytest.raises(ValidationError, match="cores"):
        load_functions(invocations, cores=0)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.lists(st.integers(0, 6), min_size=4, max_size=4), min_size=1, max_size=5),
    spread=st.sampled_from(["random", "even"]),
    limit=st.integers(0, 40),
    seed=st.integers(0, 5),
)
def test_property_one_task_per_invocation_in_its_minute(tmp_path_factory, counts, spread, limit, seed):
    lines = ["HashOwner,HashApp,HashFunction,Trigger,1,2,3,4"]
    lines += [f"o,a,f{i},http," + ",".join(map(str, row)) for i, row in enumerate(counts)]
    path = write(tmp_path_factory.mktemp("f"), "inv.csv", lines)
    tasks = load_functions(path, spread=spread, seed=seed)
    assert len(tasks) == sum(map(sum, counts))
    for minute in range(4):
        in_minute = [t for t in tasks if minute * 60_000 <= t.arrival_ms < (minute + 1) * 60_000]
        per_function = {f"f{i}": row[minute] for i, row in enumerate(counts)}
        for function, expected in per_function.items():
            assert sum(t.labels["function"] == function for t in in_minute) == expected
    assert [t.arrival_ms for t in tasks] == sorted(t.arrival_ms for t in tasks)
    assert load_functions(path, spread=spread, seed=seed, limit=limit) == tasks[:limit]
