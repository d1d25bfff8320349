"""Error types of the core. Every failure a user can cause maps to one of these."""

from __future__ import annotations


class DodoorError(Exception):
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
