"""``--token-file`` / ``$DODOOR_TOKEN_FILE``: the token as orchestrators hand it out.

One helper (dodoor/service/auth_token.py) serves the three daemons; the last test starts
all three on one token file and checks they hold each other to it.
"""

from __future__ import annotations

import time

import pytest

from dodoor.service.auth_token import resolve_token
from dodoor.tools.cli import build_parser, main
from dodoor.errors import ValidationError
from node_agent.command import settings_from_args
from scheduler.command import scheduler_settings
from scheduler.loadstore.command import loadstore_settings
from tests.daemons.conftest import free_port, http_json


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("s3cret-token\n")  # what `echo ... > file` and most secret stores leave
    return path


def test_flag_file_and_environment_precedence(token_file, tmp_path):
    other = tmp_path / "other"
    other.write_text("  from-env-file \n")
    assert resolve_token(None, None, {}) is None
    assert resolve_token("flag", None, {"DODOOR_TOKEN": "env"}) == "flag"
    assert resolve_token(None, str(token_file), {"DODOOR_TOKEN": "env"}) == "s3cret-token"
    assert resolve_token(None, None, {"DODOOR_TOKEN": "env"}) == "env"
    assert resolve_token(None, None, {"DODOOR_TOKEN_FILE": str(other)}) == "from-env-file"
    # an empty variable counts as unset, as before
    assert resolve_token(None, None, {"DODOOR_TOKEN": "", "DODOOR_TOKEN_FILE": str(other)}) \
        == "from-env-file"


def test_both_flags_or_both_variables_are_refused(token_file):
    with pytest.raises(ValidationError) as exc:
        resolve_token("flag", str(token_file), {})
    assert exc.value.field == "--token-file"
    with pytest.raises(ValidationError) as exc:
        resolve_token(None, None, {"DODOOR_TOKEN": "env", "DODOOR_TOKEN_FILE": str(token_file)})
    assert exc.value.field == "$DODOOR_TOKEN_FILE"


def test_a_missing_or_empty_file_is_an_error_not_an_open_door(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    with pytest.raises(ValidationError, match="empty"):
        resolve_token(None, str(empty), {})
    with pytest.raises(ValidationError, match="cannot read") as exc:
        resolve_token(None, str(tmp_path / "absent"), {})
    assert exc.value.field == "--token-file"
    with pytest.raises(ValidationError) as exc:
        resolve_token(None, None, {"DODOOR_TOKEN_FILE": str(tmp_path / "absent")})
    assert exc.value.field == "$DODOOR_TOKEN_FILE"


def test_every_daemon_reads_the_token_file(token_file, monkeypatch):
    monkeypatch.delenv("DODOOR_TOKEN", raising=False)
    monkeypatch.delenv("DODOOR_TOKEN_FILE", raising=False)
    parser = build_parser()
    ls = parser.parse_args(["loadstore", "--token-file", str(token_file)])
    assert loadstore_settings(ls).token == "s3cret-token"
    sc = parser.parse_args(["scheduler", "--loadstore", "http://x", "--token-file", str(token_file)])
    assert scheduler_settings(sc).token == "s3cret-token"
    ag = parser.parse_args(["agent", "--loadstore", "http://x", "--cores", "1", "--memory-mb", "64",
                            "--disk-mb", "0", "--token-file", str(token_file)])
    assert settings_from_args(ag).token == "s3cret-token"
    monkeypatch.setenv("DODOOR_TOKEN_FILE", str(token_file))
    assert loadstore_settings(parser.parse_args(["loadstore"])).token == "s3cret-token"


def test_a_bad_token_file_stops_the_daemon_with_one_line(tmp_path, capsys):
    assert main(["loadstore", "--token-file", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dodoor loadstore: error: --token-file: cannot read" in err[0]


def test_three_daemons_on_one_token_file(spawn, token_file, tmp_path):
    env = {"DODOOR_TOKEN": "", "DODOOR_TOKEN_FILE": ""}
    ls_port, sc_port, ag_port = free_port(), free_port(), free_port()
    store = spawn(["loadstore", "--port", str(ls_port), "--state-file", "",
                   "--token-file", str(token_file)], ls_port, env)
    spawn(["scheduler", "--port", str(sc_port), "--loadstore", store.url,
           "--token-file", str(token_file)], sc_port, env)
    spawn(["agent", "--port", str(ag_port), "--id", "tok-0", "--loadstore", store.url,
           "--cores", "1", "--memory-mb", "256", "--disk-mb", "0",
           "--journal", str(tmp_path / "tok-0.sqlite")],
          ag_port, {"DODOOR_TOKEN": "", "DODOOR_TOKEN_FILE": str(token_file)})
    sched = f"http://127.0.0.1:{sc_port}"
    assert http_json(sched + "/v1/nodes")[0] == 401
    assert http_json(sched + "/v1/nodes", token="wrong")[0] == 401
    deadline = time.monotonic() + 20
    nodes: list = []
    while time.monotonic() < deadline:
        status, body = http_json(sched + "/v1/nodes", token="s3cret-token")
        assert status == 200, body
        nodes = [n["id"] for n in body["nodes"]]
        if nodes == ["tok-0"]:
            break
        time.sleep(0.1)
    assert nodes == ["tok-0"], "the agent never reached the scheduler's view through the store"
    status, body = http_json(sched + "/v1/tasks", {"id": "tok-task", "cores": 1, "memory_mb": 64,
                                                   "duration_ms": 10}, token="s3cret-token")
    assert status == 202, body
