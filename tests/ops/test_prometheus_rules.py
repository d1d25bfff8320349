"""The compose cluster's Prometheus files: config, rules and the rules' unit tests.

promtool checks them when installed; without it, the files are still checked
against the compose services and the metrics the daemons really export.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.ops.conftest import PROMTOOL, needs_promtool, run_tasks, scrape_all

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
PROM_DIR = COMPOSE / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120,
                          cwd=PROM_DIR)


@needs_promtool
def test_promtool_check_rules():
    proc = promtool("check", "rules", "rules.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_alerts_and_recording_rules():
    proc = promtool("test", "rules", "rules_test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_promtool_check_config():
    # --syntax-only: the token file and rules path exist only inside the container
    proc = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_compose_component_is_scraped_with_the_token():
    compose = (COMPOSE / "docker-compose.yml").read_text()
    config = (PROM_DIR / "prometheus.yml").read_text()
    services = re.findall(r"^  ((?:loadstore|scheduler-\d+|agent-\d+)):$", compose, re.M)
    ports = {"loadstore": 8090, "scheduler": 8100, "agent": 8200}
    targets = set(re.findall(r'"([a-z0-9-]+:\d+)"', config))
    want = {f"{s}:{ports[s.split('-')[0]]}" for s in services}
    assert len(services) == 9 and want <= targets, want - targets
    # each dodoor job carries the token file the container writes from DODOOR_TOKEN
    jobs = re.split(r"\n  - job_name: ", config)[1:]
    for job in jobs:
        if job.startswith("dodoor-"):
            assert "credentials_file: /tmp/dodoor-token" in job, job
    assert "/tmp/dodoor-token" in compose and "DODOOR_TOKEN" in compose


async def test_the_rules_use_only_metrics_the_daemons_export(cluster):
    await run_tasks(cluster, 2, "rules")
    exported = set()
    for text in (await scrape_all(cluster)).values():
        exported |= set(re.findall(r"^(dodoor_[a-z_]+)", text, re.M))
    used = set(re.findall(r"\b(dodoor_[a-z_]+)", (PROM_DIR / "rules.yml").read_text()))
    assert used and used <= exported, used - exported
