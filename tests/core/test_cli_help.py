"""Every command explains itself: a description, help and a stated default for each option."""

from __future__ import annotations

import argparse

import pytest

from dodoor.tools.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser, prefix: str = "dodoor"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


COMMANDS = dict(_commands(build_parser()))


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if (action.option_strings and action.help != argparse.SUPPRESS
                and not isinstance(action, argparse._HelpAction)):
            yield action


def test_every_command_is_covered():
    assert {"dodoor simulate", "dodoor sweep", "dodoor scheduler", "dodoor loadstore",
            "dodoor agent", "dodoor cluster", "dodoor cluster up", "dodoor submit",
            "dodoor replay", "dodoor evaluate", "dodoor profile"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_description(name):
    assert (COMMANDS[name].description or "").strip(), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_and_states_its_default(name):
    parser = COMMANDS[name]
    formatter = parser._get_formatter()
    for action in _options(parser):
        assert (action.help or "").strip(), f"{name} {action.option_strings[0]} has no help"
        if action.nargs == 0 or action.required or action.default == []:
            continue  # a flag, an option that must be given, or a repeatable one
        shown = formatter._get_help_string(action)
        assert "default" in shown, f"{name} {action.option_strings[0]}: {shown!r}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_prints(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([*name.split()[1:], "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: " + name)


def test_the_policy_option_has_one_name():
    for name, parser in COMMANDS.items():
        visible = {s for a in _options(parser) for s in a.option_strings}
        assert "--policies" not in visible, name


def test_old_spelling_still_parses():
    args = build_parser().parse_args(["evaluate", "--policies", "dodoor,random"])
    assert args.policy == ["dodoor,random"]


def test_log_level_is_checked(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--log-level", "loud", "simulate"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --log-level: invalid choice: 'LOUD'" in err[0]
    assert build_parser().parse_args(["--log-level", "debug", "simulate"]).log_level == "DEBUG"


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["cluster", "up", "--agents", "0"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == ("dodoor cluster up: error: argument --agents: must be >= 1, got 0 "
                    "(see dodoor cluster up --help)")
