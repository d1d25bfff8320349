"""Loader for the Dodoor evaluation CSVs (derived from the Azure Packing Trace 2020).

Columns, no header: task id, cores, memory MB, disk MB, duration ms, arrival ms,
task type, mode. Errors name the file, line and column.
"""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path

from dodoor.errors import TraceFormatError
from dodoor.resources import Task

COLUMNS = ("task_id", "cores", "memory_mb", "disk_mb", "duration_ms", "arrival_ms", "type", "mode")
BUNDLED = ("azure_data_60.csv", "azure_data_600.csv")


def bundled_trace(name: str = "azure_data_60.csv") -> Path:
    """Path of a trace shipped inside the package."""
    if name not in BUNDLED:
        raise ValueError(f"no bundled trace {name!r}; have {', '.join(BUNDLED)}")
    return Path(str(resources.files("workloads") / "data" / name))


def load_dodoor_csv(path: str | Path, limit: int | None = None) -> list[Task]:
    """Tasks of a Dodoor-format CSV, sorted by arrival (stable in file order)."""
    path = Path(path)
    tasks: list[Task] = []
    seen: set[str] = set()
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceFormatError(str(path), 0, "-", f"cannot open: {exc.strerror}") from exc
    with handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < 6:
                raise TraceFormatError(
                    str(path), line_no, len(row) + 1, f"expected at least 6 columns, got {len(row)}"
                )
            task_id = row[0].strip()
            if not task_id:
                raise TraceFormatError(str(path), line_no, 1, "empty task id")
            if task_id in seen:
                raise TraceFormatError(str(path), line_no, 1, f"duplicate task id {task_id!r}")
            seen.add(task_id)
            values = [_number(path, line_no, col, row[col - 1]) for col in range(2, 7)]
            cores, memory, disk, duration, arrival = values
            _require(path, line_no, 2, cores > 0, "cores must be > 0")
            _require(path, line_no, 3, memory > 0, "memory MB must be > 0")
            _require(path, line_no, 4, disk >= 0, "disk MB must be >= 0")
            _require(path, line_no, 5, duration > 0, "duration ms must be > 0")
            _require(path, line_no, 6, arrival >= 0, "arrival ms must be >= 0")
            labels = {"type": row[6].strip()} if len(row) > 6 and row[6].strip() else {}
            tasks.append(Task(task_id, cores, memory, disk, duration, arrival, labels=labels))
            if limit is not None and len(tasks) >= limit:
                break
    tasks.sort(key=lambda t: t.arrival_ms)
    return tasks


def _number(path: Path, line: int, column: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise TraceFormatError(
            str(path), line, column, f"{COLUMNS[column - 1]}: not a number: {text!r}"
        ) from exc
    if not math.isfinite(value):
        raise TraceFormatError(str(path), line, column, f"{COLUMNS[column - 1]}: not finite: {text!r}")
    return value


def _require(path: Path, line: int, column: int, ok: bool, reason: str) -> None:
    if not ok:
        raise TraceFormatError(str(path), line, column, reason)
