"""The busy-cluster container overhead: a fixed point between the solo and full figures."""

import math

import pytest
from hypothesis import given, strategies as st

from dodoor.tools.overhead import busy_overhead_ms


@given(st.floats(1, 5000), st.floats(0, 5000), st.integers(2, 64), st.floats(0, 1e6))
def test_overhead_solves_its_equation_between_solo_and_full(solo, extra, slots, duration):
    full = solo + extra
    o = busy_overhead_ms(solo, full, slots, duration)
    assert solo - 1e-6 <= o <= full + 1e-6
    # o = solo + (full − solo) · (share of a slot's time spent in the container phase)
    assert o == pytest.approx(solo + (full - solo) * o / (o + duration), rel=1e-9, abs=1e-6)


def test_limits_and_a_worked_case():
    assert busy_overhead_ms(409.0, 2290.0, 10, 0.0) == 2290.0  # all slots always in the phase
    assert busy_overhead_ms(409.0, 2290.0, 10, 1e12) == pytest.approx(409.0, abs=0.01)
    assert busy_overhead_ms(300.0, 300.0, 10, 500.0) == pytest.approx(300.0)
    assert busy_overhead_ms(100.0, 900.0, 1, 50.0) == 100.0  # one slot: never shared
    # 409 ms alone, 2,290 ms ten at once, 944-ms tasks: o² − 1346·o − 409·944 = 0
    assert busy_overhead_ms(409.0, 2290.0, 10, 944.0) == pytest.approx(
        (1346.0 + math.sqrt(1346.0 ** 2 + 4 * 409.0 * 944.0)) / 2)


@pytest.mark.parametrize("args", [(10.0, 5.0, 4, 1.0), (1.0, 2.0, 0, 1.0), (1.0, 2.0, 4, -1.0)])
def test_bad_inputs_are_refused(args):
    with pytest.raises(ValueError, match="got"):
        busy_overhead_ms(*args)
