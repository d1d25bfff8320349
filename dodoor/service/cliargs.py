"""Pieces every command's parser shares: the help format, the policy option, checks.

Kept apart from :mod:`dodoor.tools.cli` so each role's ``register`` can use them
without importing the entry point.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from dodoor.errors import ValidationError
from dodoor.priority import parse_priority_mix

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_PORT = 65535
POLICY_LIST_HELP = ("comma-separated specs NAME or NAME:KEY=VALUE,...; an item with '=' is a "
                    "setting of the spec before it, so dodoor-wait:d=16,alpha=0.3,dodoor is two "
                    "specs; repeatable")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, plus each option's default when its help does not state it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or action.nargs == 0 or text == argparse.SUPPRESS
                or "default" in text or default in (None, argparse.SUPPRESS) or default == []):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def use_formatter(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every sub-command below it :class:`HelpFormatter`."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:  # argparse has no public walk of its sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                use_formatter(sub)


def add_policy_list(parser: argparse.ArgumentParser, default_text: str,
                    aliases: Sequence[str] = ()) -> None:
    """The repeatable ``--policy SPEC,...`` option (old spellings as hidden aliases)."""
    parser.add_argument("--policy", action="append", default=None, metavar="SPEC[,SPEC...]",
                        help=f"{POLICY_LIST_HELP} (default {default_text})")
    for alias in aliases:
        parser.add_argument(alias, dest="policy", action="append", help=argparse.SUPPRESS)


def add_priority_mix(parser: argparse.ArgumentParser, seed_flag: str) -> None:
    """The ``--priority-mix CLASS=SHARE,...`` option every tool that draws classes shares.

    Parsed by :func:`dodoor.priority.parse_priority_mix` into ``{class: share}``
    (None when absent); the tool draws with ``dodoor.priority.apply_priority_mix``
    and the seed of ``seed_flag``.
    """
    def mix(text: str) -> dict[int, float]:
        try:
            return parse_priority_mix(text)
        except ValueError as exc:  # argparse prints a one-line usage error for these
            raise argparse.ArgumentTypeError(str(exc)) from exc

    mix.__name__ = "priority mix"
    parser.add_argument("--priority-mix", type=mix, default=None, metavar="CLASS=SHARE,...",
                        help=f"draw each task's class with {seed_flag}, e.g. high=0.2,normal=0.8 "
                             "(classes low, normal, high, critical or 0..3; default: each task "
                             "keeps its own class, normal unless the trace sets one)")


def bounded(kind: Callable[[str], int | float], low: float | None = None,
            high: float | None = None) -> Callable[[str], int | float]:
    """An argparse ``type`` that also checks ``low <= value <= high`` (a one-line error)."""
    def convert(text: str) -> int | float:
        value = kind(text)
        if (low is not None and not value >= low) or (high is not None and not value <= high):
            where = (f">= {low:g}" if high is None else f"<= {high:g}" if low is None
                     else f"in [{low:g}, {high:g}]")
            raise argparse.ArgumentTypeError(f"must be {where}, got {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in "invalid int value"
    return convert


def output_dir(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a directory this process can write into, created if missing.

    Checked before any work starts, so a long run does not fail at its end.
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise ValidationError(flag, f"{out} exists and is not a directory") from exc
    except OSError as exc:
        raise ValidationError(flag, f"cannot create directory {out}: {exc.strerror or exc}") from exc
    if not out.is_dir():
        raise ValidationError(flag, f"{out} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ValidationError(flag, f"cannot write into {out}: {exc.strerror or exc}") from exc
    return out


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def env_token() -> str | None:
    """The shared bearer token from ``$DODOOR_TOKEN`` (None when unset or empty)."""
    return os.environ.get("DODOOR_TOKEN") or None
