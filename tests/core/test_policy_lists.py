"""Policy lists on the command line, and the spec a scheduler reports for itself."""

from __future__ import annotations

import pytest

from dodoor.errors import ValidationError
from dodoor.policies.lists import effective_spec, parse_policy_list, split_policy_list
from dodoor.settings import PolicySettings


@pytest.mark.parametrize("text, specs", [
    ("dodoor", ["dodoor"]),
    ("dodoor,random", ["dodoor", "random"]),
    ("dodoor-wait:d=16,dodoor", ["dodoor-wait:d=16", "dodoor"]),
    ("dodoor-wait:d=16,alpha=0.3,dodoor,random:k=4",
     ["dodoor-wait:d=16,alpha=0.3", "dodoor", "random:k=4"]),
    (" dodoor , random, ", ["dodoor", "random"]),
    ("dodoor:weights=1/1/0,sparrow", ["dodoor:weights=1/1/0", "sparrow"]),
])
def test_lists_split_between_specs(text, specs):
    assert split_policy_list(text) == specs


@pytest.mark.parametrize("text, message", [
    ("d=8,dodoor", "comes before any policy name"),
    ("dodoor,d=8", "follows 'dodoor', which has no settings; write dodoor:d=8"),
])
def test_a_setting_without_its_spec_is_named(text, message):
    with pytest.raises(ValidationError, match=message):
        split_policy_list(text)


def test_parse_checks_names_settings_and_drops_repeats():
    assert parse_policy_list(["dodoor,random", "dodoor"], default=[]) == ["dodoor", "random"]
    assert parse_policy_list(None, default=["random", "sparrow"]) == ["random", "sparrow"]
    with pytest.raises(ValidationError, match="unknown policy 'nope'"):
        parse_policy_list(["nope"], default=[])
    with pytest.raises(ValidationError, match="'ideal' runs in the simulator only"):
        parse_policy_list(["ideal"], default=[], allowed=["dodoor"])
    with pytest.raises(ValidationError, match=r"'dodoor:d=0': d: must be >= 1"):
        parse_policy_list(["dodoor:d=0"], default=[])
    assert PolicySettings.from_mapping({"weights": "1/2/0"}).weights == (1.0, 2.0, 0.0)


def test_effective_spec_adds_the_settings_the_spec_does_not_name():
    assert effective_spec("dodoor-wait:d=16", PolicySettings()) == "dodoor-wait:d=16"
    settings = PolicySettings.from_mapping({"d": "8", "weights": "1,1,1"})
    assert effective_spec("dodoor", settings) == "dodoor:d=8,weights=1/1/1"
    # the spec's own setting wins over --param, as in make_policy_spec
    assert effective_spec("dodoor:d=4", settings) == "dodoor:d=4,weights=1/1/1"
    # and the result parses back to the same settings
    assert parse_policy_list([effective_spec("dodoor", settings)], default=[]) == [
        "dodoor:d=8,weights=1/1/1"]
