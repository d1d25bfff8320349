"""Loader for the Azure Functions Trace 2019 (invocation counts per minute).

The invocation file (``invocations_per_function_md.anon.dNN.csv``) has a header
``HashOwner, HashApp, HashFunction, Trigger, 1, ..., 1440`` and one row per
function with its invocation count in each minute of the day. Each invocation
becomes a :class:`Task`, its arrival placed within its minute either uniformly
at random (seeded) or evenly.

Optional companions give demands: the durations file
(``function_durations_percentiles.anon.dNN.csv``: per function Average, Count,
Minimum, Maximum, percentile_Average_0/1/25/50/75/99/100, all in ms) and the
memory file (``app_memory_percentiles.anon.dNN.csv``: per app SampleCount,
AverageAllocatedMb, AverageAllocatedMb_pct1, ...). Functions they do not cover
get ``default_duration_ms`` (1000 ms) and ``default_memory_mb`` (256 MiB).
"""

from __future__ import annotations

import bisect
import csv
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dodoor.errors import TraceFormatError, ValidationError
from dodoor.resources import Task
from workloads.vmtable import open_text

log = logging.getLogger(__name__)

KEY_COLUMNS = ("HashOwner", "HashApp", "HashFunction", "Trigger")
MS_PER_MINUTE = 60_000.0
# Shahrad et al. (ATC 2020): most functions run for about a second or less on
# average and half the apps allocate under ~170 MB; 256 MiB is the common
# configured size, so these defaults sit near the trace's middle.
DEFAULT_DURATION_MS = 1000.0
DEFAULT_MEMORY_MB = 256.0
MIN_DURATION_MS = 1.0
PERCENTILES = (0, 1, 25, 50, 75, 99, 100)
SPREADS = ("random", "even")
DURATION_STATS = ("average", "sample")


@dataclass(frozen=True, slots=True)
class FunctionRow:
    """One invocation row: the function's identity and its non-zero minutes.

    Kept sparse because most functions are idle most minutes and a day's file
    has tens of thousands of rows by 1,440 minutes.
    """

    owner: str
    app: str
    function: str
    trigger: str
    minutes: np.ndarray  # 0-based within the selected range
    counts: np.ndarray  # invocations in each of those minutes, all > 0


def load_functions(
    path: str | Path,
    *,
    durations: str | Path | None = None,
    memory: str | Path | None = None,
    minutes: tuple[int, int] | None = None,
    limit: int | None = None,
    spread: str = "random",
    seed: int = 0,
    cores: float = 1.0,
    disk_mb: float = 0.0,
    default_duration_ms: float = DEFAULT_DURATION_MS,
    default_memory_mb: float = DEFAULT_MEMORY_MB,
    duration_stat: str = "average",
) -> list[Task]:
    """One task per invocation, sorted by arrival; the first minute starts at 0 ms.

    ``minutes`` is an inclusive 1-based range of minute columns. ``limit`` keeps
    the earliest invocations and stops expanding once reached, so huge counts
    stay cheap. ``duration_stat="average"`` uses each function's Average;
    ``"sample"`` draws from its percentile curve (linear between points).
    """
    _check_options(spread, duration_stat, cores, disk_mb, default_duration_ms, default_memory_mb, limit)
    path = Path(path)
    spread_rng = random.Random(seed)
    # A stream of its own, so a limit (fewer arrivals drawn) leaves durations unchanged.
    duration_rng = random.Random(f"{seed}:durations")
    rows, first_minute = _read_invocations(path, minutes)
    stats = _read_durations(Path(durations)) if durations is not None else {}
    app_memory = _read_memory(Path(memory)) if memory is not None else {}
    arrivals = _expand(rows, spread, limit, spread_rng)
    # Everything but a sampled duration is per function: work it out once per row.
    per_row = []
    for row in rows:
        points = stats.get((row.owner, row.app, row.function))
        memory_mb = float(max(1, math.ceil(app_memory.get((row.owner, row.app), default_memory_mb))))
        labels = {"source": "azure-functions2019", "trigger": row.trigger, "function": row.function}
        per_row.append((points, memory_mb, labels))
    tasks: list[Task] = []
    for n, (arrival, index) in enumerate(arrivals):
        points, memory_mb, labels = per_row[index]
        if points is None:
            duration = default_duration_ms
        elif duration_stat == "average":
            duration = points[0]
        else:
            duration = _sample(points[1], duration_rng)
        tasks.append(Task(f"inv-{n}", cores, memory_mb, disk_mb, max(MIN_DURATION_MS, duration),
                          arrival, labels=labels))
    log.debug("expanded %d invocations of %d functions from minute %d of %s",
              len(tasks), len(rows), first_minute, path)
    return tasks


def _check_options(spread: str, duration_stat: str, cores: float, disk_mb: float,
                   duration_ms: float, memory_mb: float, limit: int | None) -> None:
    if spread not in SPREADS:
        raise ValidationError("spread", f"unknown spread {spread!r}; use {' or '.join(SPREADS)}")
    if duration_stat not in DURATION_STATS:
        raise ValidationError("duration_stat",
                              f"unknown statistic {duration_stat!r}; use {' or '.join(DURATION_STATS)}")
    for name, value, minimum in (("cores", cores, 0.0), ("default_duration_ms", duration_ms, 0.0),
                                 ("default_memory_mb", memory_mb, 0.0)):
        if not (math.isfinite(value) and value > minimum):
            raise ValidationError(name, f"must be > 0, got {value!r}")
    if not (math.isfinite(disk_mb) and disk_mb >= 0):
        raise ValidationError("disk_mb", f"must be >= 0, got {disk_mb!r}")
    if limit is not None and limit < 0:
        raise ValidationError("limit", f"must be >= 0, got {limit!r}")


def _read_invocations(path: Path, minutes: tuple[int, int] | None) -> tuple[list[FunctionRow], int]:
    with open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None or not "".join(header).strip():
                raise TraceFormatError(str(path), 1, 1, "empty file: expected a header row")
            n_minutes = _check_header(path, header)
            first, last = _minute_range(minutes, n_minutes)
            rows: list[FunctionRow] = []
            for line_no, row in enumerate(reader, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(header):
                    raise TraceFormatError(str(path), line_no, min(len(row), len(header)) + 1,
                                           f"expected {len(header)} columns, got {len(row)}")
                for column in range(3):
                    if not row[column].strip():
                        raise TraceFormatError(str(path), line_no, column + 1,
                                               f"{KEY_COLUMNS[column]}: empty")
                counts = _counts(path, line_no, row, first, last)
                busy = np.flatnonzero(counts)
                rows.append(FunctionRow(row[0], row[1], row[2], row[3].strip(), busy, counts[busy]))
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as exc:
            raise TraceFormatError(str(path), 0, "-", f"unreadable: {exc}") from exc
    return rows, first


def _check_header(path: Path, header: list[str]) -> int:
    for i, name in enumerate(KEY_COLUMNS):
        if i >= len(header) or header[i].strip() != name:
            got = header[i].strip() if i < len(header) else "nothing"
            raise TraceFormatError(str(path), 1, i + 1, f"expected header {name!r}, got {got!r}")
    minute_names = [h.strip() for h in header[len(KEY_COLUMNS):]]
    if not minute_names:
        raise TraceFormatError(str(path), 1, len(KEY_COLUMNS) + 1, "no minute columns after Trigger")
    for i, name in enumerate(minute_names, start=1):
        if name != str(i):
            raise TraceFormatError(str(path), 1, len(KEY_COLUMNS) + i,
                                   f"expected minute column {str(i)!r}, got {name!r}")
    return len(minute_names)


def _minute_range(minutes: tuple[int, int] | None, n_minutes: int) -> tuple[int, int]:
    if minutes is None:
        return 1, n_minutes
    first, last = minutes
    if not 1 <= first <= last <= n_minutes:
        raise ValidationError("minutes", f"need 1 <= first <= last <= {n_minutes}, got {minutes!r}")
    return first, last


def _counts(path: Path, line: int, row: list[str], first: int, last: int) -> np.ndarray:
    offset = len(KEY_COLUMNS) - 1
    cells = row[offset + first: offset + last + 1]
    try:
        counts = np.array(cells, dtype=np.int64)
    except (ValueError, OverflowError):
        counts = None
    if counts is None or bool(np.any(counts < 0)):
        # The vectorized parse failed; find the cell to name in the error.
        for i, cell in enumerate(cells):
            column = offset + first + i + 1
            try:
                value = int(cell)
            except ValueError as exc:
                raise TraceFormatError(str(path), line, column,
                                       f"minute {first + i}: not an integer count: {cell!r}") from exc
            if value < 0:
                raise TraceFormatError(str(path), line, column, f"minute {first + i}: negative count {value}")
    return counts


def _expand(rows: Sequence[FunctionRow], spread: str, limit: int | None,
            rng: random.Random) -> list[tuple[float, int]]:
    """(arrival ms, row index) of every invocation, minute by minute, earliest first."""
    out: list[tuple[float, int]] = []
    if not rows:
        return out
    minutes = np.concatenate([row.minutes for row in rows])
    counts = np.concatenate([row.counts for row in rows])
    indices = np.concatenate([np.full(len(row.minutes), i) for i, row in enumerate(rows)])
    order = np.lexsort((indices, minutes))  # by minute, then file order
    minutes, counts, indices = minutes[order], counts[order], indices[order]
    starts = np.flatnonzero(np.diff(minutes, prepend=-1))
    for begin, end in zip(starts.tolist(), [*starts[1:].tolist(), len(minutes)]):
        if limit is not None and len(out) >= limit:
            break
        base = int(minutes[begin]) * MS_PER_MINUTE
        batch: list[tuple[float, int, int]] = []
        for index, count in zip(indices[begin:end].tolist(), counts[begin:end].tolist()):
            if spread == "random":
                offsets = sorted(rng.random() * MS_PER_MINUTE for _ in range(count))
            else:
                offsets = [i * MS_PER_MINUTE / count for i in range(count)]
            batch.extend((base + offset, index, i) for i, offset in enumerate(offsets))
        batch.sort()
        out.extend((arrival, index) for arrival, index, _ in batch)
    return out if limit is None else out[:limit]


def _read_durations(path: Path) -> dict[tuple[str, str, str], tuple[float, list[float]]]:
    """Per function: (Average, [percentile_Average_0 .. _100]) in ms."""
    names = ["Average"] + [f"percentile_Average_{p}" for p in PERCENTILES]
    out: dict[tuple[str, str, str], tuple[float, list[float]]] = {}
    for line, key, values in _keyed_rows(path, ("HashOwner", "HashApp", "HashFunction"), names):
        if any(b < a for a, b in zip(values[1:], values[2:])):
            raise TraceFormatError(str(path), line, "percentile_Average_*", "percentiles must not decrease")
        out.setdefault(key, (values[0], values[1:]))
    return out


def _read_memory(path: Path) -> dict[tuple[str, str], float]:
    """Per app: its average allocated memory in MB."""
    out: dict[tuple[str, str], float] = {}
    for _, key, values in _keyed_rows(path, ("HashOwner", "HashApp"), ["AverageAllocatedMb"]):
        out.setdefault(key, values[0])
    return out


def _keyed_rows(path: Path, keys: Sequence[str], names: Sequence[str]):
    """Yield (line, key tuple, non-negative values of ``names``) for each data row."""
    with open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise TraceFormatError(str(path), 1, 1, "empty file: expected a header row")
            where: list[int] = []
            for name in (*keys, *names):
                if name not in header:
                    raise TraceFormatError(str(path), 1, name, f"missing column {name!r}")
                where.append(header.index(name))
            for line_no, row in enumerate(reader, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) < len(header):
                    raise TraceFormatError(str(path), line_no, len(row) + 1,
                                           f"expected {len(header)} columns, got {len(row)}")
                key = tuple(row[i] for i in where[: len(keys)])
                values = [_value(path, line_no, i, header[i], row[i]) for i in where[len(keys):]]
                yield line_no, key, values
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as exc:
            raise TraceFormatError(str(path), 0, "-", f"unreadable: {exc}") from exc


def _value(path: Path, line: int, index: int, name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise TraceFormatError(str(path), line, index + 1, f"{name}: not a number: {text!r}") from exc
    if not math.isfinite(value) or value < 0:
        raise TraceFormatError(str(path), line, index + 1,
                               f"{name}: must be a finite number >= 0, got {text!r}")
    return value


def _sample(points: Sequence[float], rng: random.Random) -> float:
    """A draw from the piecewise-linear distribution through the percentile points."""
    q = rng.random() * 100.0
    i = min(bisect.bisect_right(PERCENTILES, q), len(PERCENTILES) - 1)
    lo_p, hi_p = PERCENTILES[i - 1], PERCENTILES[i]
    lo, hi = points[i - 1], points[i]
    return lo + (hi - lo) * (q - lo_p) / (hi_p - lo_p)
