import gzip

import pytest

from dodoor.errors import TraceFormatError, ValidationError
from workloads.vmtable import load_vmtable

ROWS = [
    # vmid, sub, deployment, created, deleted, maxcpu, avgcpu, p95, category, cores, memory GB
    "vm-c,s1,d1,600,900,90.1,20.2,80.3,Interactive,2,4",
    "vm-a,s1,d1,0,30,50.0,10.0,40.0,Delay-insensitive,>24,>64",
    "vm-b,s2,d2,300,300,12.5,3.1,9.9,Unknown,4,0.75",
    "vm-d,s2,d3,300,2592000,12.5,3.1,9.9,Interactive,8,32",
]


def write(tmp_path, lines, name="vmtable.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_exact_tasks_in_creation_order(tmp_path):
    tasks = load_vmtable(write(tmp_path, ROWS))
    assert [t.task_id for t in tasks] == ["vm-a", "vm-b", "vm-d", "vm-c"]
    # Arrivals are vmcreated in ms from the first creation; file order breaks the 300 s tie.
    assert [t.arrival_ms for t in tasks] == [0.0, 300_000.0, 300_000.0, 600_000.0]
    a, b, d, c = tasks
    assert (a.cores, a.memory_mb) == (24.0, 65536.0)  # open buckets read as their bound
    assert (b.cores, b.memory_mb) == (4.0, 768.0)
    assert (c.cores, c.memory_mb, c.disk_mb) == (2.0, 4096.0, 0.0)
    assert [t.duration_ms for t in tasks] == [30_000.0, 1.0, 60_000.0, 60_000.0]
    assert c.labels == {"source": "azure-vmtable", "category": "Interactive"}


def test_rate_window_limit_cap_disk(tmp_path):
    path = write(tmp_path, ROWS)
    tasks = load_vmtable(path, rate=2, cap_ms=120_000, disk_mb=512)
    assert [t.arrival_ms for t in tasks] == [0.0, 500.0, 1000.0, 1500.0]
    assert [t.duration_ms for t in tasks] == [30_000.0, 1.0, 120_000.0, 120_000.0]
    assert {t.disk_mb for t in tasks} == {512.0}
    window = load_vmtable(path, window=(300, 900))
    assert [(t.task_id, t.arrival_ms) for t in window] == [("vm-b", 0.0), ("vm-d", 0.0), ("vm-c", 300_000.0)]
    assert [t.task_id for t in load_vmtable(path, limit=2)] == ["vm-a", "vm-b"]


def test_gzipped_file_reads_the_same(tmp_path):
    plain = write(tmp_path, ROWS)
    packed = tmp_path / "vmtable.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert load_vmtable(packed) == load_vmtable(plain)


@pytest.mark.parametrize(
    "bad_row, column, reason",
    [
        ("vm-x,s,d,abc,900,1,1,1,Unknown,2,4", 4, "not a number"),
        ("vm-x,s,d,100,50,1,1,1,Unknown,2,4", 5, "before vmcreated"),
        ("vm-x,s,d,-5,50,1,1,1,Unknown,2,4", 4, ">= 0"),
        ("vm-x,s,d,100,200,1,1,1,Unknown,-2,4", 10, "> 0"),
        ("vm-x,s,d,100,200,1,1,1,Unknown,2,big", 11, "not a number"),
        ("vm-x,s,d,100,200,1,1,1,Unknown", 10, "expected 11 columns"),
        (",s,d,100,200,1,1,1,Unknown,2,4", 1, "empty"),
        ("vm-c,s,d,100,200,1,1,1,Unknown,2,4", 1, "duplicate vmid"),
    ],
)
def test_bad_rows_name_file_line_and_column(tmp_path, bad_row, column, reason):
    path = write(tmp_path, ROWS[:2] + [bad_row])
    with pytest.raises(TraceFormatError, match=reason) as info:
        load_vmtable(path)
    assert (info.value.path, info.value.line, info.value.column) == (str(path), 3, column)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TraceFormatError, match="empty file") as info:
        load_vmtable(empty)
    assert info.value.line == 1
    with pytest.raises(TraceFormatError, match="cannot open"):
        load_vmtable(tmp_path / "missing.csv")
    # A window that matches nothing in a good file is not an error.
    assert load_vmtable(write(tmp_path, ROWS), window=(10**9, 10**9 + 1)) == []


def test_bad_options(tmp_path):
    path = write(tmp_path, ROWS)
    with pytest.raises(ValidationError, match="disk_mb"):
        load_vmtable(path, disk_mb=-1)
    with pytest.raises(ValidationError, match="limit"):
        load_vmtable(path, limit=-3)
