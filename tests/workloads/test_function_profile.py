"""``dodoor profile --local`` works from an installed copy and writes outside the package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dodoor.errors import DodoorError
from workloads.function_profile import local_script, profile, run_local

REPO = Path(__file__).resolve().parents[2]
# what `pip install .` puts on the path ([tool.setuptools.packages.find] in pyproject.toml)
PACKAGES = ("dodoor", "scheduler", "node_agent", "workloads")


def test_the_functions_script_is_part_of_the_package():
    script = local_script()
    assert script.is_file() and script.parent == REPO / "workloads"


def test_a_local_profile_runs_the_packaged_script():
    doc = profile(run_local, "local", repeat=1, calls={"short": ("floatops", ("1000",))})
    short = doc["classes"]["short"]
    assert short["function"] == "floatops" and short["duration_ms"] > 0
    assert short["memory_mb"] > 1


def test_a_failing_function_is_one_error_naming_it():
    with pytest.raises(DodoorError, match=r"floatops nope exited with code 2: .*invalid int"):
        run_local("floatops", ("nope",))


def test_profile_local_from_an_installed_copy_writes_to_the_working_directory(tmp_path):
    site = tmp_path / "site"
    for package in PACKAGES:
        shutil.copytree(REPO / package, site / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.csv"))
    bundled = (site / "workloads" / "data" / "function_profile.json").read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "dodoor", "profile", "--local", "--repeat", "1"],
                          cwd=work, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    written = work / "out" / "function_profile.json"
    assert set(json.loads(written.read_text())["classes"]) == {"short", "medium", "long"}
    assert (site / "workloads" / "data" / "function_profile.json").read_bytes() == bundled
