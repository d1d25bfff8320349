"""Error types of the core. Every failure a user can cause maps to one of these.

Every type here survives pickling, whatever its constructor takes: errors cross
process boundaries (``dodoor sweep`` runs its cells in worker processes), and
Python's default exception pickling calls ``cls(*self.args)``, which fails for a
constructor such as ``ValidationError(field, reason)`` whose ``args`` hold only
the formatted message. A worker whose error cannot be unpickled breaks the
whole pool instead of reporting one line.
"""

from __future__ import annotations

from typing import Any


def _rebuild(cls: type[BaseException], args: tuple, state: dict[str, Any]) -> BaseException:
    """Recreate an exception without calling its ``__init__`` (see the module docstring)."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class PicklableError(Exception):
    """Base of project exceptions with their own constructors: pickles by state, not by
    calling the constructor again, so subclasses may take any arguments."""

    def __reduce__(self) -> tuple:
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class DodoorError(PicklableError):
    """Base class of all errors raised by dodoor."""


class ValidationError(DodoorError):
    """A task or setting has a bad field. ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class NoFitError(ValidationError):
    """A well-formed task that no node of the cluster can ever hold."""


class DecodeError(DodoorError):
    """A wire message could not be decoded (bad msgpack, wrong shape, wrong version)."""


class TraceFormatError(DodoorError):
    """A workload file is malformed. Names the file, line and column."""

    def __init__(self, path: str, line: int, column: str | int, reason: str) -> None:
        super().__init__(f"{path}:{line}: column {column}: {reason}")
        self.path = path
        self.line = line
        self.column = column
        self.reason = reason
