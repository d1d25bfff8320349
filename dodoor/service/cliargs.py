"""Pieces every command's parser shares: the help format, the policy option, checks,
and the daemons' flags derived from their settings dataclasses (:func:`setting`).

Kept apart from :mod:`dodoor.tools.cli` so each role's ``register`` can use them
without importing the entry point.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from dodoor.errors import ValidationError
from dodoor.service.auth_token import add_token_arguments, resolve_token, token_from_args
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


def env_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The shared bearer token from the environment (``$DODOOR_TOKEN`` or
    ``$DODOOR_TOKEN_FILE``, read by :func:`~dodoor.service.auth_token.resolve_token`)."""
    return resolve_token(environ=environ)


_CLI = "cli"  # the field metadata key of :func:`setting`
_SAME = object()
_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}


def setting(default: Any, help: str, *, flag: str | None = None, cli_default: Any = _SAME,
            convert: Callable[[Any], Any] | None = None, **argparse_kwargs: Any) -> Any:
    """A settings dataclass field that is also its command's flag.

    ``flag`` defaults to ``--`` + the field name with dashes; ``cli_default`` is the
    flag's default when it differs from the field's (None: filled in at the entry
    point, say from the host); ``convert`` turns the parsed value into the field's;
    the rest goes to ``add_argument`` (a bool field is a ``store_true`` flag, the type
    of other fields comes from their annotation unless given).
    """
    spec = {"help": help, "flag": flag, "cli_default": cli_default, "convert": convert,
            **argparse_kwargs}
    return dataclasses.field(default=default, metadata={_CLI: spec})


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of settings dataclass ``cls`` that are flags (:func:`setting`)."""
    return [f for f in dataclasses.fields(cls) if _CLI in f.metadata]


def add_setting_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per :func:`setting` field of ``cls``, in field order."""
    for f in flag_fields(cls):
        kwargs = {k: v for k, v in f.metadata[_CLI].items() if k not in ("flag", "convert")}
        name = f.metadata[_CLI]["flag"] or "--" + f.name.replace("_", "-")
        default = kwargs.pop("cli_default")
        kwargs["default"] = f.default if default is _SAME else default
        if isinstance(f.default, bool) and "action" not in kwargs:
            kwargs["action"] = "store_true"
        elif "type" not in kwargs and "action" not in kwargs and "choices" not in kwargs:
            kind = _TYPES.get(str(f.type).split("|")[0].strip())
            if kind is None:
                raise TypeError(f"{cls.__name__}.{f.name}: annotation {f.type!r} names no flag "
                                f"type; give setting(..., type=...)")
            kwargs["type"] = kind
        parser.add_argument(name, dest=f.name, **kwargs)


def setting_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The values of ``cls``'s flag fields in ``args``, converted to the fields' types."""
    out = {}
    for f in flag_fields(cls):
        value, convert = getattr(args, f.name), f.metadata[_CLI]["convert"]
        out[f.name] = convert(value) if convert is not None else value
    return out


def daemon_parser(subparsers: argparse._SubParsersAction, name: str, cls: type,
                  run: Callable[[argparse.Namespace], int], help: str,
                  description: str) -> argparse.ArgumentParser:
    """A daemon's command: one flag per :func:`setting` field of ``cls``, then the token's."""
    parser = subparsers.add_parser(name, help=help, description=description)
    add_setting_flags(parser, cls)
    add_token_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def daemon_settings(cls: type, args: argparse.Namespace,
                    environ: Mapping[str, str] | None = None, **values: Any) -> Any:
    """``cls`` built once from the parsed flags, the token (flags, else ``environ``, by
    default the process environment: the one place a daemon reads it) and ``values``
    the entry point worked out itself (they win over the flags)."""
    return cls(**{**setting_values(cls, args), **values}, token=token_from_args(args, environ))
