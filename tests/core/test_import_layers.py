"""The layering of docs/design.md §11, as import-linter checks it.

The contracts are in pyproject.toml; this runs ``lint-imports`` on the tree, and
shows that each contract breaks when a module reaches across its line.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("dodoor", "scheduler", "node_agent", "workloads")


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    command = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    return subprocess.run([*command, "--no-cache", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_every_contract_is_kept():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


# contract id, module that gets the bad import, the import
CROSSINGS = [
    ("dodoor-layers", "dodoor/score.py", "import dodoor.service.http"),
    ("dodoor-layers", "dodoor/sim/engine.py", "import dodoor.tools.inputs"),
    ("core-no-shell", "dodoor/wire.py", "import scheduler.settings"),
    ("core-no-shell", "dodoor/service/peers.py", "import node_agent.settings"),
    ("daemons-apart", "node_agent/lease.py", "import scheduler.view"),
    ("sim-pure", "dodoor/sim/engine.py", "import workloads.load"),
    ("workloads-data-only", "workloads/load.py", "import dodoor.sim.engine"),
    ("only-tools-on-top", "scheduler/placements.py", "import dodoor.client"),
]


@pytest.mark.parametrize("contract, module, line", CROSSINGS,
                         ids=[f"{c}:{m}" for c, m, _ in CROSSINGS])
def test_a_crossing_import_breaks_its_contract(tmp_path, contract, module, line):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with open(tmp_path / module, "a", encoding="utf-8") as fh:
        fh.write(f"\n{line}\n")
    done = lint_imports(tmp_path, "--contract", contract)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout and line.split()[-1] in done.stdout, done.stdout
