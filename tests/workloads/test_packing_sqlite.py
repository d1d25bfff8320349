import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dodoor.errors import TraceFormatError, ValidationError
from dodoor.resources import NodeSpec
from workloads.packing_sqlite import load_packing_sqlite

VM_TYPES = [
    # vmTypeId, machineId, core, memory, hdd, ssd, nic
    (1, 5, 0.25, 0.25, 0.0, 0.0, 0.1),
    (1, 3, 0.125, 0.0625, 0.01, 0.02, 0.05),
    (2, 3, 0.5, 0.25, 0.0, 0.0, 0.0),
]
SECOND = 1 / 86400
VMS = [
    # vmId, tenantId, vmTypeId, priority, starttime, endtime
    (10, 7, 2, 0, 0.5, 0.5 + 30 * SECOND),
    (11, 7, 1, 1, 0.25, None),
    (12, 8, 1, 0, 0.75, 1.75),
    (13, 8, 2, 0, 0.25, 0.25),
]


def make_db(path, vms=VMS, vm_types=VM_TYPES, vm_columns=None, skip_table=None):
    conn = sqlite3.connect(path)
    columns = vm_columns or "vmId, tenantId, vmTypeId, priority, starttime, endtime"
    if skip_table != "vm":
        conn.execute(f"CREATE TABLE vm ({columns})")
        n = len(columns.split(","))
        conn.executemany(f"INSERT INTO vm VALUES ({','.join('?' * n)})", [row[:n] for row in vms])
    if skip_table != "vmType":
        conn.execute("CREATE TABLE vmType "
                     "(id INTEGER PRIMARY KEY, vmTypeId, machineId, core, memory, hdd, ssd, nic)")
        conn.executemany("INSERT INTO vmType (vmTypeId, machineId, core, memory, hdd, ssd, nic) "
                         "VALUES (?,?,?,?,?,?,?)", vm_types)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def db(tmp_path):
    return make_db(tmp_path / "packing.sqlite")


def test_demands_durations_and_default_rate(db):
    tasks = load_packing_sqlite(db)
    assert [t.task_id for t in tasks] == ["11", "13", "10", "12"]
    assert [t.arrival_ms for t in tasks] == [0.0, 100.0, 200.0, 300.0]
    # Type 1 uses machine 3 (the lowest), not machine 5; disk is the larger of hdd/ssd.
    t11, t13, t10, t12 = tasks
    assert (t11.cores, t11.memory_mb, t11.disk_mb) == (2.0, 8192.0, 10486.0)
    assert (t10.cores, t10.memory_mb, t10.disk_mb) == (8.0, 32768.0, 0.0)
    assert t11.duration_ms == 60000.0  # still alive: the cap
    assert t13.duration_ms == 1.0  # zero lifetime
    assert t10.duration_ms == 30000.0
    assert t12.duration_ms == 60000.0  # one day, capped
    assert t11.labels == {"source": "azure-packing2020", "vm_type": "1"}


def test_the_priority_column_gives_the_classes(tmp_path, db):
    # 0 (low) -> low, 1 (high) -> high, NULL -> the default normal (docs/workloads.md)
    with_null = VMS[:3] + [(13, 8, 2, None, 0.25, 0.25)]
    assert {t.task_id: t.priority for t in load_packing_sqlite(db)} == {
        "10": 0, "11": 2, "12": 0, "13": 0}
    path = make_db(tmp_path / "null.sqlite", vms=with_null)
    assert {t.task_id: t.priority for t in load_packing_sqlite(path)}["13"] == 1
    without = make_db(tmp_path / "none.sqlite",
                      vms=[(v, t, ty, s, e) for v, t, ty, _, s, e in VMS],
                      vm_columns="vmId, tenantId, vmTypeId, starttime, endtime")
    assert {t.priority for t in load_packing_sqlite(without)} == {1}


def test_original_timing_and_cap(db):
    tasks = load_packing_sqlite(db, rate=None, cap_ms=20000)
    assert [t.arrival_ms for t in tasks] == [0.0, 0.0, 21_600_000.0, 43_200_000.0]
    assert [t.duration_ms for t in tasks] == [20000.0, 1.0, 20000.0, 20000.0]


def test_rate_window_limit_and_host(db):
    host = NodeSpec("h", 32.0, 65536.0, 1000.0, 1)
    tasks = load_packing_sqlite(db, host=host, rate=4, window=(0.3, 1.0))
    assert [(t.task_id, t.arrival_ms) for t in tasks] == [("10", 0.0), ("12", 250.0)]
    assert (tasks[1].cores, tasks[1].memory_mb, tasks[1].disk_mb) == (4.0, 4096.0, 20.0)
    assert [t.task_id for t in load_packing_sqlite(db, limit=2)] == ["11", "13"]
    assert load_packing_sqlite(db, limit=0) == []


@pytest.mark.parametrize(
    "kwargs, column, line",
    [
        ({"skip_table": "vmType"}, "vmType", 0),
        ({"skip_table": "vm"}, "vm", 0),
        ({"vm_columns": "vmId, tenantId, vmTypeId, priority, starttime"}, "vm.endtime", 0),
        ({"vms": VMS[:2] + [(12, 8, 1, 0, "yesterday", 1.0)]}, "vm.starttime", 3),
        ({"vms": VMS[:1] + [(11, 7, 1, 1, 0.25, "soon")]}, "vm.endtime", 2),
        ({"vms": [(11, 7, 1, 1, 0.25, 0.2)]}, "vm.endtime", 1),
        ({"vms": [(11, 7, 9, 1, 0.25, 0.5)]}, "vm.vmTypeId", 1),
        ({"vm_types": VM_TYPES[:2] + [(2, 3, -0.5, 0.25, 0, 0, 0)]}, "vmType.core", 3),
        ({"vm_types": VM_TYPES[:2] + [(2, 3, 0.5, "lots", 0, 0, 0)]}, "vmType.memory", 3),
        ({"vm_types": VM_TYPES[:2] + [(2, 3, 0.0, 0.25, 0, 0, 0)]}, "vmType.core", 3),
        ({"vms": VMS[:1] + [(11, 7, 1, 2, 0.25, None)]}, "vm.priority", 2),
        ({"vms": [(11, 7, 1, "high", 0.25, None)]}, "vm.priority", 1),
    ],
)
def test_bad_databases_name_file_line_and_column(tmp_path, kwargs, column, line):
    path = make_db(tmp_path / "bad.sqlite", **kwargs)
    with pytest.raises(TraceFormatError) as info:
        load_packing_sqlite(path)
    err = info.value
    assert (err.path, err.line, err.column) == (str(path), line, column)
    assert str(path) in str(err)


def test_empty_missing_and_non_sqlite_files(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(TraceFormatError, match="missing table 'vm'"):
        load_packing_sqlite(empty)
    text = tmp_path / "text.db"
    text.write_text("vmId,starttime\n1,0.5\n" * 100)
    with pytest.raises(TraceFormatError, match="not a sqlite database"):
        load_packing_sqlite(text)
    missing = tmp_path / "nope.sqlite"
    with pytest.raises(TraceFormatError, match="no such file"):
        load_packing_sqlite(missing)
    assert not missing.exists()  # read-only open never creates a database


def test_bad_options(db):
    with pytest.raises(ValidationError, match="rate"):
        load_packing_sqlite(db, rate=0)
    with pytest.raises(ValidationError, match="cap_ms"):
        load_packing_sqlite(db, cap_ms=-1)
    with pytest.raises(ValidationError, match="window"):
        load_packing_sqlite(db, window=(1.0, 0.5))


vm_rows = st.lists(
    st.tuples(
        st.integers(1, 2),
        st.floats(-1.0, 10.0, allow_nan=False),
        st.one_of(st.none(), st.floats(0.0, 2.0, allow_nan=False)),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(rows=vm_rows, rate=st.one_of(st.none(), st.floats(0.5, 100.0)), cap=st.floats(1.0, 1e6))
def test_property_every_vm_once_in_start_order(tmp_path_factory, rows, rate, cap):
    vms = [(i, 0, t, 0, s, None if life is None else s + life) for i, (t, s, life) in enumerate(rows)]
    path = make_db(tmp_path_factory.mktemp("p") / "p.sqlite", vms=vms)
    tasks = load_packing_sqlite(path, rate=rate, cap_ms=cap)
    assert sorted(int(t.task_id) for t in tasks) == list(range(len(rows)))
    starts = {i: s for i, (_, s, _) in enumerate(rows)}
    assert [starts[int(t.task_id)] for t in tasks] == sorted(starts.values())
    assert all(t.arrival_ms >= 0 for t in tasks)
    assert [t.arrival_ms for t in tasks] == sorted(t.arrival_ms for t in tasks)
    assert all(1.0 <= t.duration_ms <= max(cap, 1.0) for t in tasks)
