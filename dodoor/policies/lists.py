"""Lists of policy specs on the command line: ``dodoor-wait:d=16,alpha=0.3,dodoor,random``.

A spec is ``name`` or ``name:key=value,key=value``. Its own settings are
comma-separated too, so a list cannot simply be split on commas. The rule that
keeps it unambiguous: split on commas, then every item that holds ``=`` is a
setting of the spec before it, and every other item starts a new spec. The
example is therefore three specs: ``dodoor-wait:d=16,alpha=0.3``, ``dodoor``
and ``random``. A setting whose value is itself a list (``weights``) separates
its values with ``/`` inside a spec: ``dodoor:weights=1/1/0``.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from dodoor.errors import ValidationError
from dodoor.settings import PolicySettings, key_values


def split_policy_list(text: str, field: str = "policy") -> list[str]:
    """The specs of one comma-separated list (see the module docstring), in order."""
    specs: list[str] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if "=" in item and ":" not in item:
            if not specs:
                raise ValidationError(field, f"setting {item!r} comes before any policy name in "
                                             f"{text!r}; write NAME:{item}")
            if ":" not in specs[-1]:
                raise ValidationError(field, f"setting {item!r} follows {specs[-1]!r}, which has "
                                             f"no settings; write {specs[-1]}:{item}")
            specs[-1] += "," + item
        else:
            specs.append(item)
    return specs


def parse_policy_list(values: Iterable[str] | None, default: Sequence[str],
                      allowed: Sequence[str] | None = None, field: str = "policy") -> list[str]:
    """Every spec of the (repeatable) option's values, checked and without repeats.

    ``all`` stands for ``default``. A spec whose name is unknown, or not in
    ``allowed`` when given, or whose settings are bad, is an error naming it.
    """
    from dodoor.policies import POLICIES, make_policy_spec

    specs: list[str] = []
    for text in values or ["all"]:
        for spec in split_policy_list(text, field):
            specs.extend(default if spec == "all" else [spec])
    if not specs:
        raise ValidationError(field, "no policy given")
    known = tuple(allowed if allowed is not None else POLICIES)
    for spec in specs:
        name = spec.partition(":")[0]
        if name not in known:
            what = (f"policy {name!r} runs in the simulator only" if name in POLICIES
                    else f"unknown policy {name!r}")
            raise ValidationError(field, f"{what}; use one of {', '.join(known)}")
        try:
            make_policy_spec(spec)
        except ValidationError as exc:
            raise ValidationError(field, f"{spec!r}: {exc}") from exc
    return list(dict.fromkeys(specs))


def effective_spec(spec: str, settings: PolicySettings) -> str:
    """``spec`` plus every setting of ``settings`` that differs from the defaults and the
    spec does not already set: the policy as it actually runs, as one spec.

    A scheduler started as ``--policy dodoor --param d=8`` runs ``dodoor:d=8``; this
    is what it reports, so a simulation of the reported spec is the same policy.
    """
    name, _, own = spec.partition(":")
    given = set(key_values([item for item in own.split(",") if item], "policy"))
    defaults = PolicySettings()
    extra = []
    for f in dataclasses.fields(PolicySettings):
        value = getattr(settings, f.name)
        if f.name == "extra" or f.name in given or value == getattr(defaults, f.name):
            continue
        if isinstance(value, tuple):
            text = "/".join(f"{v:g}" for v in value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = f"{value:g}"
        else:
            text = str(value)
        extra.append(f"{f.name}={text}")
    items = [i for i in own.split(",") if i] + extra
    return f"{name}:{','.join(items)}" if items else name
