import pytest

from dodoor.errors import TraceFormatError
from workloads.dodoor_csv import bundled_trace, load_dodoor_csv


def write(tmp_path, lines):
    path = tmp_path / "trace.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rows_sorted_by_arrival_stable_with_type_label(tmp_path):
    path = write(tmp_path, ["b,2,512,10,3000,50,cpu,short", "a,1.5,256,0,1000,20", "c,4,1024,0,500,50"])
    tasks = load_dodoor_csv(path)
    assert [(t.task_id, t.cores, t.memory_mb, t.disk_mb, t.duration_ms, t.arrival_ms) for t in tasks] == [
        ("a", 1.5, 256.0, 0.0, 1000.0, 20.0),
        ("b", 2.0, 512.0, 10.0, 3000.0, 50.0),
        ("c", 4.0, 1024.0, 0.0, 500.0, 50.0),
    ]
    assert tasks[1].labels == {"type": "cpu"} and tasks[0].labels == {}


@pytest.mark.parametrize(
    "bad_row, column, reason",
    [
        ("x,1,256,0,1000", 6, "at least 6 columns"),
        ("x,one,256,0,1000,0", 2, "not a number"),
        ("x,1,256,-1,1000,0", 4, "disk MB must be >= 0"),
        ("x,1,256,0,0,0", 5, "duration ms must be > 0"),
        ("x,1,256,0,10,nan", 6, "not finite"),
        ("a,1,256,0,10,0", 1, "duplicate task id 'a'"),
        (",1,256,0,10,0", 1, "empty task id"),
    ],
)
def test_bad_rows_name_line_and_column(tmp_path, bad_row, column, reason):
    path = write(tmp_path, ["a,1,256,0,1000,0", bad_row])
    with pytest.raises(TraceFormatError, match=reason) as info:
        load_dodoor_csv(path)
    assert (info.value.path, info.value.line, info.value.column) == (str(path), 2, column)


def test_limit_and_missing_file(tmp_path):
    assert [t.task_id for t in load_dodoor_csv(bundled_trace(), limit=3)] == ["0", "1", "2"]
    with pytest.raises(TraceFormatError, match="cannot open"):
        load_dodoor_csv(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="no bundled trace"):
        bundled_trace("other.csv")
