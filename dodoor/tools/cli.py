"""The one entry point: ``dodoor <command>``.

Each command lives with its role and contributes its own sub-parser through a
``register(subparsers)`` function; the parser sets ``func`` to a callable that
takes the parsed namespace and returns an exit code. Only the tools import the
roles' command modules, so no layer below depends on them (docs/design.md §11).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn, Sequence

from dodoor.errors import DodoorError
from dodoor.service.cliargs import LOG_LEVELS, use_formatter
from dodoor.tools import cluster_command, replay_command, sim_command, sweep_command
from node_agent import command as agent_command
from scheduler import command as scheduler_command
from scheduler.loadstore import command as loadstore_command

# every command group's module, in the order of `dodoor --help`
COMMAND_MODULES = (sim_command, sweep_command, scheduler_command, loadstore_command,
                   agent_command, cluster_command, replay_command)
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
    for module in COMMAND_MODULES:
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
