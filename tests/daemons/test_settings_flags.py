"""One source for each setting: the daemons' flags are their settings dataclasses' fields,
KEY=VALUE is parsed once, the environment is read at the entry point, and a setting that
would do nothing is an error naming it."""

from __future__ import annotations

import argparse
import importlib

import pytest

from dodoor.errors import ValidationError
from dodoor.policies import DEFAULT_POLICY
from dodoor.service.cliargs import env_token, flag_fields
from dodoor.settings import PolicySettings, key_values
from dodoor.tools.localcluster import ClusterSettings
from node_agent.settings import AgentSettings
from scheduler.loadstore.settings import LoadStoreSettings
from scheduler.settings import SchedulerSettings

COMMANDS = [("scheduler", "scheduler.command", SchedulerSettings),
            ("loadstore", "scheduler.loadstore.command", LoadStoreSettings),
            ("agent", "node_agent.command", AgentSettings)]
TOKEN_FLAGS = {"--token", "--token-file"}  # every daemon's; they resolve the ``token`` field
# the public CLI before the flags were derived: every name and default stays
BEFORE = {
    "scheduler": {"--host": "127.0.0.1", "--port": 8100, "--id": "sched-0", "--loadstore": None,
                  "--advertise-url": None, "--policy": "dodoor-wait:d=16", "--param": [],
                  "--max-body-bytes": 8388608, "--seed": None, "--agent-timeout-ms": 2000.0,
                  "--resolve-timeout-ms": 30000.0, "--fallback": False, "--fallback-time-s": 1.0,
                  "--fallback-window-ms": 10.0, "--fallback-window-tasks": 16,
                  "--fallback-nodes": 64},
    "loadstore": {"--host": "127.0.0.1", "--port": 8090, "--b": 80, "--dead-after-ms": 3000.0,
                  "--refresh-ms": 1000.0,
                  "--adaptive-b-target-ms": 0.0, "--delta-snapshots": False,
                  "--state-file": "dodoor-loadstore.json", "--index-entries": 1000000,
                  "--claim-ttl-ms": 60000.0, "--rebalance": False, "--rebalance-min-queue": 2},
    "agent": {"--host": "127.0.0.1", "--port": 8200, "--id": "node-0", "--loadstore": None,
              "--advertise-url": None, "--cores": None, "--memory-mb": None, "--disk-mb": None,
              "--slots": None, "--executor": "sleep", "--journal": None,
              "--journal-keep-finished": 0, "--journal-retention-s": None,
              "--report-interval-ms": 100.0, "--heartbeat-ms": 1000.0, "--sleep-scale": 1.0,
              "--task-timeout-ms": None, "--docker-network": None, "--docker-allow-image": [],
              "--docker-warm-image": [], "--docker-warm-per-image": 2, "--docker-warm-idle-s": 60.0,
              "--preempt": False,
              "--max-body-bytes": 4194304},
}


def _parser(name: str, module: str) -> argparse.ArgumentParser:
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(module).register(sub)
    return sub.choices[name]


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("name, module, cls", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_the_flags_of_each_daemon_are_its_settings_fields(name, module, cls):
    options = _options(_parser(name, module))
    derived = [a for a in options if not TOKEN_FLAGS & set(a.option_strings)]
    assert [a.dest for a in derived] == [f.name for f in flag_fields(cls)]
    assert {a.option_strings[0] for a in options} - TOKEN_FLAGS == set(BEFORE[name])
    assert {a.option_strings[0]: a.default for a in derived} == BEFORE[name]


@pytest.mark.parametrize("name, module, cls", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_flag_given_reaches_its_field(name, module, cls, tmp_path):
    """Every non-default value given on the command line ends up in the settings."""
    build = {"scheduler": "scheduler_settings", "loadstore": "loadstore_settings",
             "agent": "settings_from_args"}[name]
    argv = {"scheduler": ["--loadstore", "http://ls:1", "--id", "s9", "--param", "d=7",
                          "--agent-timeout-ms", "12", "--seed", "5"],
            "loadstore": ["--b", "9", "--delta-snapshots", "--state-file", "", "--port", "99",
                          "--rebalance", "--rebalance-min-queue", "3"],
            "agent": ["--loadstore", "http://ls:1", "--id", "n9", "--cores", "3", "--memory-mb",
                      "64", "--disk-mb", "0", "--journal", str(tmp_path / "j.sqlite"),
                      "--docker-allow-image", "a", "--docker-allow-image", "b"]}[name]
    args = _parser(name, module).parse_args(argv)
    settings = getattr(importlib.import_module(module), build)(args, environ={"DODOOR_TOKEN": "t"})
    assert settings.token == "t"
    if name == "scheduler":
        assert (settings.loadstore_url, settings.scheduler_id, settings.policy_settings.d,
                settings.agent_timeout_ms, settings.seed) == ("http://ls:1", "s9", 7, 12.0, 5)
    elif name == "loadstore":
        assert (settings.b, settings.delta_snapshots, settings.state_file, settings.port,
                settings.rebalance, settings.rebalance_min_queue) == (9, True, "", 99, True, 3)
    else:
        assert (settings.node_id, settings.cores, settings.slots, settings.journal_path,
                settings.docker_allowed_images) == ("n9", 3.0, 3, str(tmp_path / "j.sqlite"),
                                                    ("a", "b"))


@pytest.mark.parametrize("given, field", [
    (["--param", "b=40"], "param"), (["--param", "b=auto"], "param"),
    (["--param", "delta_snapshots=1"], "param"), (["--policy", "dodoor:d=4,b=40"], "policy"),
])
def test_a_setting_only_the_load_store_applies_is_refused_by_the_scheduler(given, field):
    from scheduler.command import scheduler_settings

    args = _parser("scheduler", "scheduler.command").parse_args(
        ["--loadstore", "http://ls:1", *given])
    with pytest.raises(ValidationError, match="does nothing at a scheduler") as err:
        scheduler_settings(args, environ={})
    assert err.value.field == field
    assert "dodoor loadstore" in err.value.reason


@pytest.mark.parametrize("given", [["--param", "learn_durations=1"],
                                   ["--policy", "dodoor-wait:d=16,learn_durations=1"]])
def test_the_scheduler_accepts_learned_durations(given):
    # the live scheduler learns them (scheduler.learning), so the setting is no longer refused
    from scheduler.command import scheduler_settings

    args = _parser("scheduler", "scheduler.command").parse_args(
        ["--loadstore", "http://ls:1", *given])
    settings = scheduler_settings(args, environ={})
    from dodoor.policies import make_policy_spec
    assert make_policy_spec(settings.policy, settings.policy_settings).settings.learn_durations


@pytest.mark.parametrize("given, field", [(["--param", "others=3"], "others"),
                                          (["--policy", "dodoor-wait:d=16,echo=3"], "echo")])
def test_a_simulator_only_herding_setting_is_refused_by_the_scheduler(given, field):
    from scheduler.command import scheduler_settings

    args = _parser("scheduler", "scheduler.command").parse_args(
        ["--loadstore", "http://ls:1", *given])
    with pytest.raises(ValidationError, match="simulator-only") as err:
        scheduler_settings(args, environ={})
    assert err.value.field == field


def test_cluster_up_refuses_the_load_store_setting_as_a_scheduler_param():
    with pytest.raises(ValidationError, match="'b' does nothing at a scheduler"):
        ClusterSettings(params=("b=40",))
    assert ClusterSettings(params=("d=4",), b=40).b == 40  # its own --b is the way


def test_one_default_policy():
    assert SchedulerSettings().policy == ClusterSettings().policy == DEFAULT_POLICY
    args = _parser("scheduler", "scheduler.command").parse_args(["--loadstore", "http://x"])
    assert args.policy == DEFAULT_POLICY


@pytest.mark.parametrize("item", ["d8", "=3", " =3"])
def test_key_values_names_the_bad_item(item):
    with pytest.raises(ValidationError) as err:
        key_values(["d=2", item], "param")
    assert err.value.field == "param" and repr(item) in err.value.reason


def test_key_values_strips_and_the_later_key_wins():
    assert key_values([" d = 2", "alpha=0.3", "d=4", "w=1=2"], "x") == \
        {"d": "4", "alpha": "0.3", "w": "1=2"}
    assert PolicySettings.from_mapping(key_values(["d=4"], "param")).d == 4


def test_the_tools_token_comes_from_the_same_reader_as_the_daemons(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    assert env_token({"DODOOR_TOKEN_FILE": str(secret)}) == "s3cret"
    assert env_token({"DODOOR_TOKEN": "x"}) == "x" and env_token({}) is None
    with pytest.raises(ValidationError, match="not both"):
        env_token({"DODOOR_TOKEN": "x", "DODOOR_TOKEN_FILE": str(secret)})
