"""Placement policies (docs/design.md §4) behind the :class:`PlacementPolicy` protocol."""

from __future__ import annotations

from typing import Callable

from dodoor.errors import ValidationError
from dodoor.policies.base import PlacementPolicy, PolicyKind, PoolPolicy, count_for
from dodoor.policies.cached import CachedPowerOfTwo, DodoorPolicy, ExpectedWaitPolicy
from dodoor.policies.ideal import IdealPolicy
from dodoor.policies.prequal import PrequalPolicy
from dodoor.policies.probing import (
    PowerOfTwo, PowerOfTwoCount, PowerOfTwoDuration, PowerOfTwoPending,
)
from dodoor.policies.simple import RandomPolicy, SparrowPolicy
from dodoor.settings import PolicySettings, key_values

POLICIES: dict[str, Callable[[PolicySettings], PlacementPolicy]] = {
    "dodoor": DodoorPolicy,
    "dodoor-wait": ExpectedWaitPolicy,
    "cached-power-of-two": CachedPowerOfTwo,
    "power-of-two": PowerOfTwo,
    "power-of-two-duration": PowerOfTwoDuration,
    "power-of-two-count": PowerOfTwoCount,
    "power-of-two-pending": PowerOfTwoPending,
    "sparrow": SparrowPolicy,
    "prequal": PrequalPolicy,
    "random": RandomPolicy,
    "ideal": IdealPolicy,
}
LIVE_POLICIES = tuple(name for name in POLICIES if name != "ideal")
# The default of the daemons and `dodoor cluster up`. `dodoor` stays the paper's
# policy; this variant beat it in mean and p99 makespan on both shipped traces at
# loads 0.5, 0.9 and their own timing, at the same messages per task
# (docs/beyond.md, benchmarks/variants.py) — docs/design.md §4's rule for a new default.
DEFAULT_POLICY = "dodoor-wait:d=16"


def is_live_spec(spec: str) -> bool:
    """Whether ``spec`` (``name`` or ``name:key=value,...``) names a policy the daemons can run."""
    return spec.partition(":")[0] in LIVE_POLICIES


def make_policy(name: str, settings: PolicySettings | None = None) -> PlacementPolicy:
    """A fresh policy object by name (policies may hold per-scheduler state)."""
    factory = POLICIES.get(name)
    if factory is None:
        raise ValidationError("policy", f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
    return factory(settings or PolicySettings())


def make_policy_spec(spec: str, base: PolicySettings | None = None) -> PlacementPolicy:
    """A policy from ``name`` or ``name:key=value,key=value`` (e.g. ``dodoor-wait:d=8``).

    Overrides apply on top of ``base``; the policy's ``name`` is the whole spec
    so variants stay apart in tables and file names.
    """
    name, _, params = spec.partition(":")
    settings = base or PolicySettings()
    if params:
        try:
            overrides = key_values(params.split(","), "policy", "key=value")
        except ValidationError as exc:
            raise ValidationError("policy", f"{exc.reason} in {spec!r}") from exc
        settings = settings.with_overrides(overrides)
    policy = make_policy(name, settings)
    policy.name = spec
    return policy


__all__ = [
    "DEFAULT_POLICY", "LIVE_POLICIES", "is_live_spec", "POLICIES", "PlacementPolicy", "PolicyKind", "PoolPolicy",
    "count_for", "make_policy", "make_policy_spec",
]
