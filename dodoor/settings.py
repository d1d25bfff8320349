"""Typed settings of the placement core, with the defaults of docs/design.md §2–§4."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

import numpy as np

from dodoor.errors import ValidationError
from dodoor.resources import N_RESOURCES


AUTO_B_TARGET_MS = 50.0  # the snapshot-age target of ``b=auto``
# Policy settings that only the load store applies live (the snapshot cadence): a
# scheduler given one would silently ignore it, so it refuses them (scheduler/settings.py).
LOADSTORE_KEYS = ("b", "adaptive_b_target_ms", "delta_snapshots")


def check_positive(settings: Any, names: Iterable[str]) -> None:
    """Raise a ValidationError naming the first of ``names`` not > 0 on ``settings``."""
    for name in names:
        value = getattr(settings, name)
        if not value > 0:
            raise ValidationError(name, f"must be > 0, got {value!r}")


def key_values(items: Iterable[str], field: str, form: str = "KEY=VALUE") -> dict[str, str]:
    """``["d=8", " alpha = 0.3"]`` -> ``{"d": "8", "alpha": "0.3"}`` (stripped; a later key
    wins); an item without ``=`` or a key is an error naming ``field`` and the item."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError(field, f"expected {form}, got {item!r}")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class PolicySettings:
    """Knobs of every policy. Unused knobs are ignored by policies that need none.

    d: candidates sampled per task; beta: probability of taking the second and
    further choices (1.0 = always d); alpha: duration weight of the load score;
    k: placements per delta batch; b: placements (all schedulers) per snapshot;
    weights: per-resource weights (cores, memory, disk).
    """

    d: int = 2
    beta: float = 1.0
    alpha: float = 0.5
    k: int = 8
    b: int = 80
    weights: tuple[float, ...] = (1.0, 1.0, 0.0)
    # Prequal: probes sent per placed task, pool bound, probe lifetime, reuse
    # budget and the RIF quantile above which a probe counts as "hot".
    probe_rate: float = 3.0
    pool_size: int = 16
    probe_max_age_ms: float = 1000.0
    probe_reuse: int = 2
    hot_quantile: float = 0.84
    # Beyond the paper (dodoor.snapshots): b chosen by the load store to hold
    # the mean snapshot age near this many ms (0 = fixed b; ``b=auto`` = 50),
    # and snapshots carrying only the rows changed since the previous one.
    adaptive_b_target_ms: float = 0.0
    delta_snapshots: bool = False
    # Beyond the paper (dodoor.estimates): score with durations learned per kind of
    # task from completions instead of the declared ones (the simulator's schedulers).
    learn_durations: bool = False
    # Beyond the paper, against herding of many schedulers on one stale snapshot
    # (docs/evaluation.md, "Herding"): ``dodoor-wait`` picks uniformly at random among
    # the candidates whose expected wait is within ``tolerance_ms`` of the least
    # (negative = off: the least wait, ties by the load score); and a scheduler's cache
    # counts each own placement ``1 + echo`` times until the next snapshot, as a
    # guess of the others' placements from the same view (0 = off).
    tolerance_ms: float = -1.0
    echo: float = 0.0
    # and (dodoor.projection) the placements of this many other schedulers since the
    # snapshot, projected into the cache where they most probably went (0 = off)
    others: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.d < 1:
            raise ValidationError("d", f"must be >= 1, got {self.d}")
        for name in ("beta", "alpha", "hot_quantile"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValidationError(name, f"must be in [0, 1], got {value}")
        if self.k < 1:
            raise ValidationError("k", f"must be >= 1, got {self.k}")
        if self.b < 1:
            raise ValidationError("b", f"must be >= 1, got {self.b}")
        if len(self.weights) != N_RESOURCES:
            raise ValidationError("weights", f"needs {N_RESOURCES} values, got {len(self.weights)}")
        if any(not math.isfinite(w) or w < 0 for w in self.weights):
            raise ValidationError("weights", f"must be finite and >= 0, got {self.weights}")
        if self.probe_rate < 0 or not math.isfinite(self.probe_rate):
            raise ValidationError("probe_rate", f"must be >= 0, got {self.probe_rate}")
        if not (math.isfinite(self.adaptive_b_target_ms) and self.adaptive_b_target_ms >= 0):
            raise ValidationError("adaptive_b_target_ms",
                                  f"must be finite and >= 0, got {self.adaptive_b_target_ms}")
        if not math.isfinite(self.tolerance_ms):
            raise ValidationError("tolerance_ms", f"must be finite, got {self.tolerance_ms}")
        for name in ("echo", "others"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValidationError(name, f"must be finite and >= 0, got {value}")
        if self.pool_size < 1:
            raise ValidationError("pool_size", f"must be >= 1, got {self.pool_size}")

    def loadstore_keys_set(self) -> list[str]:
        """The :data:`LOADSTORE_KEYS` that differ from their defaults."""
        defaults = PolicySettings()
        return [k for k in LOADSTORE_KEYS if getattr(self, k) != getattr(defaults, k)]

    def weight_vector(self) -> np.ndarray:
        return np.asarray(self.weights, dtype=np.float64)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "PolicySettings":
        """Build from loose key/value pairs (CLI ``--param d=8``); converts types."""
        return cls().with_overrides(values)

    def with_overrides(self, values: Mapping[str, Any]) -> "PolicySettings":
        """A copy with some settings replaced; string values are converted."""
        known = {f.name for f in fields(self) if f.name != "extra"}  # a mapping, not a knob
        changes: dict[str, Any] = {}
        if str(values.get("b", "")).strip().lower() == "auto":
            values = {k: v for k, v in values.items() if k != "b"}
            values.setdefault("adaptive_b_target_ms", AUTO_B_TARGET_MS)
        for key, raw in values.items():
            if key not in known:
                raise ValidationError(key, f"unknown policy setting; known: {sorted(known)}")
            changes[key] = _convert(key, raw, getattr(self, key))
        return dataclasses.replace(self, **changes)

def _convert(key: str, raw: Any, default: Any) -> Any:
    try:
        if key == "weights":
            if isinstance(raw, str):
                # "/" inside a policy spec, whose settings are already comma-separated
                return tuple(float(x) for x in raw.replace("/", ",").split(","))
            return tuple(float(x) for x in raw)
        if isinstance(default, bool):
            return str(raw).lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except (TypeError, ValueError) as exc:
        raise ValidationError(key, f"cannot convert {raw!r}: {exc}") from exc
    return raw
