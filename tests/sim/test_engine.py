"""The event loop: (time, sequence) order across the heap, channels and mailboxes."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dodoor.sim.engine import EventLoop, Mailbox


def test_simultaneous_events_run_in_scheduling_order_across_heap_and_channel():
    loop = EventLoop()
    chan = loop.channel()
    log = []
    loop.call_at(5.0, log.append, "heap-1")
    chan.call_at(5.0, log.append, "chan-1")
    loop.call_at(1.0, log.append, "heap-early")
    loop.call_at(5.0, log.append, "heap-2")
    chan.call_at(7.0, log.append, "chan-2")
    assert loop.run() == 5
    assert log == ["heap-early", "heap-1", "chan-1", "heap-2", "chan-2"]
    assert loop.now == 7.0


def test_run_until_stops_at_the_horizon_and_sets_the_clock():
    loop = EventLoop()
    log = []
    for t in (1.0, 2.0, 3.0):
        loop.call_at(t, log.append, t)
    assert loop.run(until_ms=2.0) == 2
    assert log == [1.0, 2.0] and loop.now == 2.0
    assert loop.next_time() == 3.0
    assert loop.run(until_ms=2.5) == 0 and loop.now == 2.5


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_scheduling_in_the_past_or_at_nan_is_refused(bad):
    loop = EventLoop()
    with pytest.raises(ValueError, match="cannot schedule"):
        loop.call_at(bad, print)
    chan = loop.channel()
    chan.call_at(3.0, print)
    with pytest.raises(ValueError, match="on a channel at 3.0 ms"):
        chan.call_at(2.0, print)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.booleans()), max_size=40))
def test_channels_merge_into_exactly_the_order_one_heap_gives(plan):
    """Events scheduled by running events, half of them on a channel (in time order)."""
    def run(use_channel):
        loop = EventLoop()
        chan = loop.channel()
        log = []
        last = [0.0]

        def fire(i):
            log.append((loop.now, i))
            if i < len(plan):
                delay, on_chan = plan[i]
                if on_chan and use_channel:
                    # channel events are fixed-delay-like: never before the previous one
                    last[0] = max(last[0], loop.now + delay)
                    chan.call_at(last[0], fire, i + 1)
                else:
                    when = max(last[0], loop.now + delay) if on_chan else loop.now + delay
                    if on_chan:
                        last[0] = when
                    loop.call_at(when, fire, i + 1)
                loop.call_at(loop.now + delay, log.append, (loop.now + delay, -i))
        loop.call_at(0.0, fire, 0)
        loop.run()
        return log

    assert run(True) == run(False)


def test_mailbox_gives_what_was_delivered_before_the_running_event():
    loop = EventLoop()
    box = Mailbox(loop)
    taken = []

    def reader(name):
        taken.append((name, box.take()))

    box.post(5.0, "early")  # due at 5, sent before any reader was scheduled
    loop.call_at(5.0, reader, "A")
    # due at 5 too, but sent (at t=1) after reader B was scheduled: in the loop's order
    # its delivery comes after B, so B must not see it; C, scheduled later, does
    loop.call_at(1.0, box.post, 5.0, "late")
    loop.call_at(5.0, reader, "B")
    loop.call_at(2.0, loop.call_at, 5.0, reader, "C")
    loop.call_at(4.0, reader, "before")
    loop.run()
    assert taken == [("before", []), ("A", [(5.0, "early")]), ("B", []),
                     ("C", [(5.0, "late")])]
    assert len(box) == 0


def test_mailbox_refuses_posts_out_of_delivery_order():
    loop = EventLoop()
    box = Mailbox(loop)
    box.post(4.0, "a")
    with pytest.raises(ValueError, match="mailbox at 4.0 ms"):
        box.post(3.0, "b")
