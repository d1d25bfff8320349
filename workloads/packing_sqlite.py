"""Loader for the Azure Packing Trace 2020 in its original sqlite form.

Tables used: ``vm`` (vmId, tenantId, vmTypeId, priority, starttime, endtime —
times in fractional days, ``endtime`` NULL for VMs still alive at the end of the
trace) and ``vmType`` (vmTypeId, machineId, core, memory, hdd, ssd, nic —
fractions of one machine, one row per machine type that can host the VM type).

A VM becomes a :class:`Task` whose demand is its fractions times a host's
capacity, whose duration is its lifetime capped at ``cap_ms``, and whose arrival
is either re-timed at ``rate`` tasks per second (original order kept) or its own
start time scaled from days to milliseconds. When the ``vm`` table has its
``priority`` column, a VM's class follows it (:data:`VM_PRIORITY`, documented
in docs/workloads.md); without the column every task is ``normal``. Schema-level errors (missing table
or column) are reported at line 0; row errors at the row's sqlite ``rowid``.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dodoor.errors import TraceFormatError, ValidationError
from dodoor.priority import CLASS_NAMES, DEFAULT_PRIORITY
from dodoor.resources import NodeSpec, Task

log = logging.getLogger(__name__)

MS_PER_DAY = 86_400_000.0
DEFAULT_CAP_MS = 60_000.0
DEFAULT_RATE = 10.0
MIN_DURATION_MS = 1.0
# The paper's 16-core / 128 GiB / 512 GiB executor type: the host the fractions refer to.
DEFAULT_HOST = NodeSpec("packing-host", 16.0, 128 * 1024.0, 512 * 1024.0, 2)

VM_COLUMNS = ("vmId", "vmTypeId", "starttime", "endtime")
# The trace's two tiers: 0 marks low-priority VMs (evictable, like spot), 1 the regular,
# high-priority ones; they keep those names among the 0..3 classes. NULL: the default.
VM_PRIORITY = {0: CLASS_NAMES["low"], 1: CLASS_NAMES["high"]}
VMTYPE_COLUMNS = ("vmTypeId", "machineId", "core", "memory", "hdd", "ssd")


@dataclass(frozen=True, slots=True)
class VmFractions:
    """One vmType row: the share of a machine that a VM of this type takes."""

    row: int
    machine_id: int
    core: float
    memory: float
    disk: float


def load_packing_sqlite(
    path: str | Path,
    *,
    host: NodeSpec = DEFAULT_HOST,
    cap_ms: float = DEFAULT_CAP_MS,
    rate: float | None = DEFAULT_RATE,
    limit: int | None = None,
    window: tuple[float, float] | None = None,
) -> list[Task]:
    """Tasks of a Packing 2020 sqlite file, sorted by arrival.

    ``window`` is ``(first_day, last_day)``, a half-open range of ``starttime``;
    ``limit`` keeps the first VMs by start time after the window is applied. With
    ``rate=None`` arrivals keep the trace's spacing, shifted so the first is 0.
    Lifetimes are capped at ``cap_ms``; a VM without ``endtime`` gets the cap and
    a zero lifetime becomes 1 ms.
    """
    path = Path(path)
    check_retime_options(cap_ms, rate, limit, window)
    conn = _connect(path)
    try:
        _require_columns(conn, path, "vm", VM_COLUMNS)
        _require_columns(conn, path, "vmType", VMTYPE_COLUMNS)
        _check_start_times(conn, path)
        fractions = _vm_types(conn, path)
        rows = _vm_rows(conn, window, limit, _has_column(conn, "vm", "priority"))
    except sqlite3.DatabaseError as exc:
        raise TraceFormatError(str(path), 0, "-", f"cannot read sqlite: {exc}") from exc
    finally:
        conn.close()
    arrivals = arrival_times([round(float(row[3]) * MS_PER_DAY) for row in rows], rate)
    labels: dict[object, dict[str, str]] = {}
    tasks = [_task(path, row, arrival, fractions, labels, host, cap_ms)
             for row, arrival in zip(rows, arrivals)]
    log.debug("loaded %d VMs from %s", len(tasks), path)
    return tasks


def check_retime_options(cap_ms: float, rate: float | None, limit: int | None,
                         window: tuple[float, float] | None) -> None:
    """Reject a non-positive cap or rate, a negative limit or an empty window up front."""
    if not (math.isfinite(cap_ms) and cap_ms > 0):
        raise ValidationError("cap_ms", f"must be > 0 ms, got {cap_ms!r}")
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise ValidationError("rate", f"must be > 0 tasks/s, got {rate!r}")
    if limit is not None and limit < 0:
        raise ValidationError("limit", f"must be >= 0, got {limit!r}")
    if window is not None and not (len(window) == 2 and window[0] < window[1]):
        raise ValidationError("window", f"must be (start, end) with start < end, got {window!r}")


def capped_lifetime_ms(lifetime_ms: float | None, cap_ms: float) -> float:
    """A lifetime as a task duration: capped, the cap when unknown, at least 1 ms."""
    if lifetime_ms is None:
        return cap_ms
    return max(MIN_DURATION_MS, min(lifetime_ms, cap_ms))


def arrival_times(starts_ms: Sequence[float], rate: float | None) -> list[float]:
    """Arrivals of tasks already in start order.

    With a rate, task i arrives at ``i * 1000 / rate`` ms; without, at its own
    start minus the first start, so the trace begins at 0.
    """
    if rate is not None:
        gap = 1000.0 / rate
        return [i * gap for i in range(len(starts_ms))]
    origin = starts_ms[0] if starts_ms else 0.0
    return [start - origin for start in starts_ms]


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise TraceFormatError(str(path), 0, "-", "cannot open: no such file")
    # Read-only URI so a mistyped path never creates an empty database.
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise TraceFormatError(str(path), 0, "-", f"not a sqlite database: {exc}") from exc
    return conn


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f'PRAGMA table_info("{table}")'))


def _require_columns(conn: sqlite3.Connection, path: Path, table: str, needed: Sequence[str]) -> None:
    have = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
    if not have:
        raise TraceFormatError(str(path), 0, table, f"missing table {table!r}")
    for column in needed:
        if column not in have:
            raise TraceFormatError(str(path), 0, f"{table}.{column}", f"missing column {column!r}")


def _check_start_times(conn: sqlite3.Connection, path: Path) -> None:
    # sqlite orders text after every number, so a bad starttime would silently
    # sort last (or fall outside a window) unless caught over the whole table.
    bad = conn.execute(
        "SELECT rowid, starttime FROM vm WHERE typeof(starttime) NOT IN ('integer', 'real') "
        "ORDER BY rowid LIMIT 1"
    ).fetchone()
    if bad is not None:
        raise TraceFormatError(str(path), bad[0], "vm.starttime", f"not a number: {bad[1]!r}")


def _vm_types(conn: sqlite3.Connection, path: Path) -> dict[object, VmFractions]:
    """The lowest-machineId row of every vmTypeId (deterministic choice of host type)."""
    chosen: dict[object, VmFractions] = {}
    query = ("SELECT rowid, vmTypeId, machineId, core, memory, hdd, ssd FROM vmType "
             "ORDER BY vmTypeId, machineId, rowid")
    for rowid, type_id, machine, *values in conn.execute(query):
        if type_id in chosen:
            continue
        core, memory, hdd, ssd = (
            _fraction(path, rowid, f"vmType.{name}", value)
            for name, value in zip(("core", "memory", "hdd", "ssd"), values)
        )
        # A single disk dimension: the VM needs whichever storage share binds.
        chosen[type_id] = VmFractions(rowid, machine, core, memory, max(hdd, ssd))
    return chosen


def _vm_rows(conn: sqlite3.Connection, window: tuple[float, float] | None,
             limit: int | None, with_priority: bool) -> list[tuple]:
    sql = (f"SELECT rowid, vmId, vmTypeId, starttime, endtime, "
           f"{'priority' if with_priority else 'NULL'} FROM vm")
    params: list[object] = []
    if window is not None:
        sql += " WHERE starttime >= ? AND starttime < ?"
        params += [float(window[0]), float(window[1])]
    sql += " ORDER BY starttime, rowid"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return conn.execute(sql, params).fetchall()


def _task(path: Path, row: tuple, arrival_ms: float, fractions: dict[object, VmFractions],
          labels: dict[object, dict[str, str]], host: NodeSpec, cap_ms: float) -> Task:
    rowid, vm_id, type_id, start, end, priority = row
    if vm_id is None or str(vm_id).strip() == "":
        raise TraceFormatError(str(path), rowid, "vm.vmId", "empty vmId")
    shares = fractions.get(type_id)
    if shares is None:
        raise TraceFormatError(str(path), rowid, "vm.vmTypeId", f"no vmType row for vmTypeId {type_id!r}")
    if shares.core <= 0:
        raise TraceFormatError(str(path), shares.row, "vmType.core",
                               f"core fraction of vmTypeId {type_id!r} must be > 0")
    lifetime = None
    if end is not None:
        end_day = _number(path, rowid, "vm.endtime", end)
        if end_day < start:
            raise TraceFormatError(str(path), rowid, "vm.endtime",
                                   f"endtime {end_day!r} is before starttime {start!r}")
        # Day fractions carry float noise well below a millisecond.
        lifetime = round((end_day - start) * MS_PER_DAY)
    return Task(
        task_id=str(vm_id),
        cores=round(shares.core * host.cores, 6),
        memory_mb=float(max(1, round(shares.memory * host.memory_mb))),
        disk_mb=float(round(shares.disk * host.disk_mb)),
        duration_ms=capped_lifetime_ms(lifetime, cap_ms),
        arrival_ms=arrival_ms,
        # One labels mapping per VM type, shared: millions of VMs, a few hundred types.
        labels=labels.setdefault(type_id, {"source": "azure-packing2020", "vm_type": str(type_id)}),
        priority=_priority(path, rowid, priority),
    )


def _priority(path: Path, rowid: int, value: object) -> int:
    """The class of a ``vm.priority`` value (:data:`VM_PRIORITY`; NULL is the default)."""
    if value is None:
        return DEFAULT_PRIORITY
    cls = (VM_PRIORITY.get(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
           else None)
    if cls is None:
        raise TraceFormatError(str(path), rowid, "vm.priority",
                               f"must be one of {sorted(VM_PRIORITY)} or NULL, got {value!r}")
    return cls


def _number(path: Path, rowid: int, column: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TraceFormatError(str(path), rowid, column, f"not a number: {value!r}")
    if not math.isfinite(value):
        raise TraceFormatError(str(path), rowid, column, f"not finite: {value!r}")
    return float(value)


def _fraction(path: Path, rowid: int, column: str, value: object) -> float:
    number = 0.0 if value is None else _number(path, rowid, column, value)
    if not 0.0 <= number <= 1.0:
        raise TraceFormatError(str(path), rowid, column, f"fraction must be in [0, 1], got {number!r}")
    return number
