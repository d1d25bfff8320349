"""Pick a trace loader from a file's name and content.

``load_trace(path, **options)`` detects the format (or takes ``format=``) and
passes the options to that format's loader; an option the loader does not take
is a :class:`ValidationError` naming it. Unknown formats are a
:class:`TraceFormatError` that lists the known ones.
"""

from __future__ import annotations

import csv
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dodoor.errors import TraceFormatError, ValidationError
from dodoor.resources import Task
from workloads.dodoor_csv import load_dodoor_csv
from workloads.functions import load_functions
from workloads.packing_sqlite import load_packing_sqlite
from workloads.vmtable import load_vmtable, open_text

SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
# Companion files of the functions trace that are not traces themselves.
FUNCTION_COMPANIONS = {"Average": "durations", "AverageAllocatedMb": "memory"}


@dataclass(frozen=True, slots=True)
class TraceFormat:
    """A format the registry knows: its name, loader and one-line description."""

    name: str
    loader: Callable[..., list[Task]]
    summary: str

    def options(self) -> list[str]:
        params = list(inspect.signature(self.loader).parameters.values())[1:]
        return [p.name for p in params]


FORMATS: dict[str, TraceFormat] = {
    f.name: f
    for f in (
        TraceFormat("dodoor-csv", load_dodoor_csv,
                    "Dodoor evaluation CSV, no header: id, cores, memory MB, disk MB, duration ms, "
                    "arrival ms[, type, mode] (6-8 columns)"),
        TraceFormat("packing-sqlite", load_packing_sqlite,
                    "Azure Packing Trace 2020 sqlite (.sqlite/.db): tables vm and vmType; "
                    "re-timed at 10 tasks/s, lifetimes capped at 60 s by default"),
        TraceFormat("vmtable", load_vmtable,
                    "Azure VM trace V1/V2 vmtable.csv[.gz], no header, 11 columns "
                    "(vmid, ..., vmcreated, vmdeleted, ..., vmcorecount, vmmemory GB)"),
        TraceFormat("functions", load_functions,
                    "Azure Functions 2019 invocations CSV[.gz] with header HashOwner,HashApp,"
                    "HashFunction,Trigger,1..1440; optional durations= and memory= files"),
    )
}


def describe_formats() -> str:
    """Text for CLI help: each format, how it is recognised, and its options."""
    lines = ["Trace formats (detected from the file, or forced with format=NAME):"]
    for fmt in FORMATS.values():
        lines.append(f"  {fmt.name}: {fmt.summary}")
        lines.append(f"      options: {', '.join(fmt.options())}")
    return "\n".join(lines)


def detect_format(path: str | Path) -> str:
    """The name of the format of ``path``; TraceFormatError if none matches."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise TraceFormatError(str(path), 0, "-", f"cannot open: {exc.strerror or exc}") from exc
    if magic == SQLITE_MAGIC or path.suffix.lower() in SQLITE_SUFFIXES:
        return "packing-sqlite"
    first = _first_row(path)
    if first is None:
        raise TraceFormatError(str(path), 1, 1, "empty file: cannot tell its trace format")
    if first and first[0].strip().lstrip("\ufeff") == "HashOwner":
        for column, companion in FUNCTION_COMPANIONS.items():
            if column in (c.strip() for c in first):
                raise TraceFormatError(
                    str(path), 1, column,
                    f"this is a functions {companion} file; load the invocations file with "
                    f"{companion}={path}")
        return "functions"
    if len(first) == 11 and all(_is_integer(first[i]) for i in (3, 4)):
        return "vmtable"
    if 6 <= len(first) <= 8:
        return "dodoor-csv"
    raise TraceFormatError(
        str(path), 1, "-",
        f"unknown trace format ({len(first)} columns in the first row); known formats: "
        + ", ".join(FORMATS))


def load_trace(path: str | Path, format: str | None = None, **options: Any) -> list[Task]:
    """Tasks of the trace at ``path``, sorted by arrival, with the detected loader."""
    name = format or detect_format(path)
    fmt = FORMATS.get(name)
    if fmt is None:
        raise ValidationError("format", f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    allowed = fmt.options()
    for option in options:
        if option not in allowed:
            raise ValidationError(
                option, f"not an option of the {name} format; it takes {', '.join(allowed)}")
    return fmt.loader(path, **options)


def _first_row(path: Path) -> list[str] | None:
    with open_text(path) as handle:
        try:
            for row in csv.reader(handle):
                if row and any(cell.strip() for cell in row):
                    return row
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as exc:
            raise TraceFormatError(str(path), 1, "-", f"not a text trace: {exc}") from exc
    return None


def _is_integer(text: str) -> bool:
    try:
        int(text.strip())
    except ValueError:
        return False
    return True
