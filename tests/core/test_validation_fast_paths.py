"""The number and string fast paths accept and reject exactly as the full checks do."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dodoor import validation
from dodoor.errors import ValidationError

EDGES = [0, 1, -1, 2**53, 2**53 + 1, 2**64, 10**400, 0.0, -0.0, 0.5, 1.0, 1.5, 1e308,
         math.inf, -math.inf, math.nan, True, False, None, "1", 3 + 0j]
values = st.one_of(st.sampled_from(EDGES), st.integers(), st.floats(allow_nan=True))


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except ValidationError as exc:
        return ("error", exc.field, exc.reason)
    except Exception as exc:  # noqa: BLE001 - the helpers' other failures must match too
        return ("raised", type(exc).__name__)


def _reference(field: str, value):
    """The full check of the field, without its fast path."""
    helper = {"cores": lambda v: validation._checked_positive(v, "t.", "cores"),
              "duration_ms": lambda v: validation._checked_positive(v, "t.", "duration_ms"),
              "memory_mb": lambda v: validation._checked_integer(v, "t.", "memory_mb", 1),
              "disk_mb": lambda v: validation._checked_integer(v, "t.", "disk_mb", 0)}[field]
    return _outcome(helper, value)


def _parsed(field: str, value):
    obj = {"id": "x", "cores": 1.0, "memory_mb": 1, field: value}
    out = _outcome(validation.parse_task, obj, None, "t.")
    return ("ok", getattr(out[1], field)) if out[0] == "ok" else out


@pytest.mark.parametrize("field", ["cores", "memory_mb", "disk_mb", "duration_ms"])
@pytest.mark.parametrize("value", EDGES, ids=repr)
def test_edges_match_the_helpers(field, value):
    got, want = _parsed(field, value), _reference(field, value)
    if got[0] == "ok" and isinstance(got[1], float) and math.isnan(got[1]):
        pytest.fail("NaN accepted")
    assert got == want
    if got[0] == "ok":
        assert type(got[1]) is float


@given(st.sampled_from(["cores", "memory_mb", "disk_mb", "duration_ms"]), values)
def test_any_number_matches_the_helpers(field, value):
    assert _parsed(field, value) == _reference(field, value)


@pytest.mark.parametrize("value", ["ok", "", "a\x00b", "é", "\ud800", "x" * 5000, 5, None])
def test_strings_match_the_checked_path(value):
    obj = {"id": "x", "cores": 1.0, "memory_mb": 1, "image": value}
    got = _outcome(validation.parse_task, obj, None, "t.")
    if value is None:
        assert got[0] == "ok" and got[1].image is None
    elif value in ("ok", "", "é"):
        assert got[0] == "ok" and got[1].image == value
    else:
        assert got[0] == "error" and got[1] == "t.image"
