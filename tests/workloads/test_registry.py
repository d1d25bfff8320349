import gzip

import pytest

from dodoor.errors import TraceFormatError, ValidationError
from workloads.registry import FORMATS, describe_formats, detect_format, load_trace
from workloads.dodoor_csv import bundled_trace

from .test_functions import DURATIONS, HEADER, MEMORY, ROWS as FUNCTION_ROWS
from .test_packing_sqlite import make_db
from .test_vmtable import ROWS as VM_ROWS


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_detects_each_format(tmp_path):
    assert detect_format(make_db(tmp_path / "trace.sqlite")) == "packing-sqlite"
    # sqlite is recognised by its magic bytes, whatever the name.
    assert detect_format(make_db(tmp_path / "packing.bin")) == "packing-sqlite"
    assert detect_format(write(tmp_path / "vmtable.csv", VM_ROWS)) == "vmtable"
    assert detect_format(write(tmp_path / "inv.csv", [HEADER, *FUNCTION_ROWS])) == "functions"
    assert detect_format(bundled_trace("azure_data_60.csv")) == "dodoor-csv"
    assert detect_format(write(tmp_path / "six.csv", ["t1,1,512,0,1000,0"])) == "dodoor-csv"
    packed = tmp_path / "vmtable.csv.gz"
    packed.write_bytes(gzip.compress("\n".join(VM_ROWS).encode()))
    assert detect_format(packed) == "vmtable"


def test_load_trace_dispatches_with_options(tmp_path):
    vm = load_trace(write(tmp_path / "vmtable.csv", VM_ROWS), rate=2)
    assert [t.arrival_ms for t in vm] == [0.0, 500.0, 1000.0, 1500.0]
    packing = load_trace(make_db(tmp_path / "p.db"), limit=2)
    assert [t.task_id for t in packing] == ["11", "13"]
    fn = load_trace(write(tmp_path / "inv.csv", [HEADER, *FUNCTION_ROWS]), spread="even", limit=3)
    assert [t.arrival_ms for t in fn] == [0.0, 0.0, 30_000.0]
    csv_tasks = load_trace(bundled_trace(), limit=5)
    assert [t.task_id for t in csv_tasks] == ["0", "1", "2", "3", "4"]


def test_forced_format_and_bad_options(tmp_path):
    vm_path = write(tmp_path / "vmtable.csv", VM_ROWS)
    with pytest.raises(ValidationError) as info:
        load_trace(vm_path, spread="even")
    assert info.value.field == "spread" and "vmtable" in info.value.reason
    with pytest.raises(ValidationError, match="unknown format 'parquet'"):
        load_trace(vm_path, format="parquet")
    # Forcing the Dodoor CSV loader on an 11-column file still fails cleanly on a bad cell.
    with pytest.raises(TraceFormatError) as err:
        load_trace(vm_path, format="dodoor-csv")
    assert (err.value.line, err.value.column) == (1, 2)


def test_unknown_empty_and_companion_files(tmp_path):
    odd = write(tmp_path / "odd.csv", ["a,b,c"])
    with pytest.raises(TraceFormatError, match="unknown trace format .3 columns.*packing-sqlite") as info:
        load_trace(odd)
    assert (info.value.path, info.value.line) == (str(odd), 1)
    eleven_text = write(tmp_path / "eleven.csv", ["a,b,c,d,e,f,g,h,i,j,k"])
    with pytest.raises(TraceFormatError, match="unknown trace format"):
        detect_format(eleven_text)
    empty = write(tmp_path / "empty.csv", [""])
    with pytest.raises(TraceFormatError, match="empty file"):
        load_trace(empty)
    with pytest.raises(TraceFormatError, match="durations file"):
        load_trace(write(tmp_path / "durations.csv", DURATIONS))
    with pytest.raises(TraceFormatError, match="memory file"):
        load_trace(write(tmp_path / "memory.csv", MEMORY))
    with pytest.raises(TraceFormatError, match="cannot open"):
        load_trace(tmp_path / "missing.csv")
    binary = tmp_path / "blob.csv"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(TraceFormatError, match="not a text trace"):
        load_trace(binary)


def test_describe_formats_lists_every_format_and_option():
    text = describe_formats()
    for name, fmt in FORMATS.items():
        assert name in text
        for option in fmt.options():
            assert option in text
    assert "rate" in fmt.options() or fmt.name == "functions"


def test_every_loader_yields_tasks_the_api_accepts(tmp_path):
    """Trace tasks are submitted through the API by `cluster submit`: they must validate."""
    from dodoor.validation import parse_task

    paths = [
        make_db(tmp_path / "p.sqlite"),
        write(tmp_path / "vmtable.csv", VM_ROWS),
        write(tmp_path / "inv.csv", [HEADER, *FUNCTION_ROWS]),
        bundled_trace(),
    ]
    for path in paths:
        tasks = load_trace(path, limit=50)
        assert tasks
        for task in tasks:
            again = parse_task(task.to_dict())
            assert again == task.with_arrival(0.0)
