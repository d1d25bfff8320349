"""Loader for the Azure VM trace (V1 2017 / V2 2019) ``vmtable.csv``.

Columns, no header: vmid, subscriptionid, deploymentid, vmcreated, vmdeleted
(seconds from the trace start), maxcpu, avgcpu, p95maxcpu, vmcategory,
vmcorecount, vmmemory (GB). The trace publishes core counts and memory as
buckets, the largest open-ended (``>24``, ``>64``); such a bucket is read as its
bound. A VM becomes a :class:`Task` with those cores and memory, its lifetime
capped at ``cap_ms`` as duration, and its creation time (or a fixed rate) as
arrival. Errors name the file, line and column.
"""

from __future__ import annotations

import csv
import gzip
import heapq
import io
import logging
import math
from pathlib import Path
from typing import IO, Iterator, NamedTuple

from dodoor.errors import TraceFormatError, ValidationError
from dodoor.resources import Task
from workloads.packing_sqlite import (
    DEFAULT_CAP_MS,
    arrival_times,
    capped_lifetime_ms,
    check_retime_options,
)

log = logging.getLogger(__name__)

COLUMNS = ("vmid", "subscriptionid", "deploymentid", "vmcreated", "vmdeleted", "maxcpu",
           "avgcpu", "p95maxcpu", "vmcategory", "vmcorecount", "vmmemory")
N_COLUMNS = len(COLUMNS)
MIB_PER_GB = 1024.0


def open_text(path: Path) -> IO[str]:
    """A text handle on ``path``, decompressing ``.gz`` (the trace ships gzipped)."""
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
        return path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceFormatError(str(path), 0, "-", f"cannot open: {exc.strerror or exc}") from exc


def load_vmtable(
    path: str | Path,
    *,
    cap_ms: float = DEFAULT_CAP_MS,
    rate: float | None = None,
    limit: int | None = None,
    window: tuple[float, float] | None = None,
    disk_mb: float = 0.0,
) -> list[Task]:
    """Tasks of a ``vmtable.csv``, sorted by creation time (file order on ties).

    ``window`` is ``(first_s, last_s)``, a half-open range of ``vmcreated``;
    ``limit`` keeps the earliest-created VMs after the window. ``rate`` re-times
    arrivals at that many tasks per second; without it arrivals are vmcreated in
    ms, shifted so the first is 0. The trace has no disk column: every task gets
    ``disk_mb``.
    """
    path = Path(path)
    check_retime_options(cap_ms, rate, limit, window)
    if not (math.isfinite(disk_mb) and disk_mb >= 0):
        raise ValidationError("disk_mb", f"must be >= 0, got {disk_mb!r}")
    rows = _rows(path, window)
    if limit is None:
        ordered = sorted(rows)
    else:
        # The file need not be sorted by creation; keep only the `limit` earliest.
        ordered = heapq.nsmallest(limit, rows)
    if not ordered and limit != 0:
        _require_content(path)
    arrivals = arrival_times([vm.created * 1000.0 for vm in ordered], rate)
    labels: dict[str, dict[str, str]] = {}
    tasks = [
        Task(
            task_id=vm.vm_id,
            cores=vm.cores,
            memory_mb=float(max(1, round(vm.memory_gb * MIB_PER_GB))),
            disk_mb=float(disk_mb),
            duration_ms=capped_lifetime_ms((vm.deleted - vm.created) * 1000.0, cap_ms),
            arrival_ms=arrival,
            labels=labels.setdefault(vm.category, {"source": "azure-vmtable", "category": vm.category}),
        )
        for vm, arrival in zip(ordered, arrivals)
    ]
    log.debug("loaded %d VMs from %s", len(tasks), path)
    return tasks


class VmRow(NamedTuple):
    """One parsed row; ordered by creation time, then line."""

    created: float
    line: int
    vm_id: str
    deleted: float
    cores: float
    memory_gb: float
    category: str


def _rows(path: Path, window: tuple[float, float] | None) -> Iterator[VmRow]:
    seen: set[str] = set()
    with open_text(path) as handle:
        try:
            for line_no, row in enumerate(csv.reader(handle), start=1):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                vm = _parse(path, line_no, row)
                if vm.vm_id in seen:
                    raise TraceFormatError(str(path), line_no, 1, f"duplicate vmid {vm.vm_id!r}")
                seen.add(vm.vm_id)
                if window is None or window[0] <= vm.created < window[1]:
                    yield vm
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as exc:
            raise TraceFormatError(str(path), 0, "-", f"unreadable: {exc}") from exc


def _parse(path: Path, line: int, row: list[str]) -> VmRow:
    if len(row) != N_COLUMNS:
        column = min(len(row), N_COLUMNS) + 1
        raise TraceFormatError(str(path), line, column, f"expected {N_COLUMNS} columns, got {len(row)}")
    vm_id = row[0].strip()
    if not vm_id:
        raise TraceFormatError(str(path), line, 1, "vmid: empty")
    created = _number(path, line, 4, row[3])
    deleted = _number(path, line, 5, row[4])
    if created < 0:
        raise TraceFormatError(str(path), line, 4, f"vmcreated: must be >= 0, got {row[3]!r}")
    if deleted < created:
        raise TraceFormatError(str(path), line, 5,
                               f"vmdeleted: {row[4]!r} is before vmcreated {row[3]!r}")
    cores = _bucket(path, line, 10, row[9])
    memory_gb = _bucket(path, line, 11, row[10])
    return VmRow(created, line, vm_id, deleted, cores, memory_gb, row[8].strip())


def _bucket(path: Path, line: int, column: int, text: str) -> float:
    """A core or memory bucket: a number, or an open bucket like ``>24`` read as its bound."""
    value = _number(path, line, column, text.strip().lstrip("<>=").strip())
    if value <= 0:
        raise TraceFormatError(str(path), line, column, f"{COLUMNS[column - 1]}: must be > 0, got {text!r}")
    return value


def _number(path: Path, line: int, column: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise TraceFormatError(str(path), line, column,
                               f"{COLUMNS[column - 1]}: not a number: {text!r}") from exc
    if not math.isfinite(value):
        raise TraceFormatError(str(path), line, column, f"{COLUMNS[column - 1]}: not finite: {text!r}")
    return value


def _require_content(path: Path) -> None:
    """An empty file is an error; a window that matches nothing is not."""
    with open_text(path) as handle:
        if not handle.read(4096).strip():
            raise TraceFormatError(str(path), 1, 1, "empty file: no VM rows")
