"""The live scheduler takes policy specs (name:key=value,...) and defaults to the measured variant."""

import pytest

from dodoor.errors import ValidationError
from dodoor.policies import DEFAULT_POLICY, is_live_spec, make_policy_spec
from dodoor.tools.cli import build_parser

from scheduler.settings import SchedulerSettings


def test_default_policy_is_a_live_spec_with_its_settings():
    assert is_live_spec(DEFAULT_POLICY)
    policy = make_policy_spec(DEFAULT_POLICY)
    assert (policy.name, policy.settings.d) == ("dodoor-wait:d=16", 16)
    args = build_parser().parse_args(["scheduler", "--loadstore", "http://127.0.0.1:1"])
    assert args.policy == DEFAULT_POLICY


@pytest.mark.parametrize("spec", ["dodoor", "dodoor:d=8,alpha=0.3", "sparrow", "dodoor-wait:d=4"])
def test_scheduler_settings_accept_live_specs(spec):
    assert SchedulerSettings(policy=spec).policy == spec


@pytest.mark.parametrize("spec, fragment", [
    ("ideal", "simulator-only"), ("best", "unknown"), ("dodoor:q=1", "unknown policy setting"),
    ("dodoor:d=0", "must be >= 1"),
])
def test_scheduler_settings_reject_bad_specs(spec, fragment):
    with pytest.raises(ValidationError, match=fragment):
        SchedulerSettings(policy=spec)


def test_healthz_reports_the_spec_as_it_runs_with_role_and_pid():
    import os

    from dodoor.clock import ManualClock
    from dodoor.settings import PolicySettings
    from scheduler.app import SchedulerState

    settings = SchedulerSettings(scheduler_id="sched-7", policy="dodoor",
                                 policy_settings=PolicySettings(d=8))
    health = SchedulerState(settings, ManualClock()).health()
    assert (health["role"], health["id"], health["pid"]) == ("scheduler", "sched-7", os.getpid())
    assert health["policy"] == "dodoor:d=8"  # what `dodoor evaluate --live URL` simulates
