"""The one entry point: ``dodoor <command>``.

Each command lives with its role and contributes its own sub-parser through a
``register(subparsers)`` function; the parser sets ``func`` to a callable that
takes the parsed namespace and returns an exit code. Roles are imported here
only, so the core never depends on the shells.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn, Sequence

from dodoor.service.cliargs import LOG_LEVELS, use_formatter
from dodoor.errors import DodoorError

# command group -> module providing register(subparsers)
COMMAND_MODULES: tuple[str, ...] = (
    "dodoor.tools.sim_command",  # simulate
    "dodoor.tools.sweep_command",  # sweep
    "scheduler.command",  # scheduler, loadstore
    "node_agent.command",  # agent
    "dodoor.tools.cluster_command",  # cluster up, submit
    "dodoor.tools.replay_command",  # replay, evaluate
)
log = logging.getLogger(__name__)


class Parser(argparse.ArgumentParser):
    """argparse's parser with usage errors as one line, like every other error here."""

    def error(self, message: str) -> NoReturn:
        # sub-parsers are made with the class of their parent, so this covers all of them
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every role's sub-commands, one help format."""
    parser = Parser(
        prog="dodoor",
        description="Decentralized randomized multi-resource task scheduler: the simulator, "
                    "the daemons and the tools around them. With no command, `dodoor` runs "
                    "`dodoor simulate`. `dodoor COMMAND --help` describes each command.",
    )
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, type=str.upper,
                        help="least severity of the log lines written to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    use_formatter(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not args_list:
        args_list = ["simulate"]  # the embedded default: replay the bundled trace
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DodoorError as exc:
        name = " ".join(filter(None, ("dodoor", args.command, getattr(args, "action", None))))
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
