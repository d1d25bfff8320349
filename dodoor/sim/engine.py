"""A deterministic discrete-event loop on a simulated millisecond clock.

Events are ordered by ``(time_ms, seq)``: the sequence number makes
simultaneous events run in the order they were scheduled, so a run is a pure
function of its inputs and seed. The loop is its own clock — it implements
:class:`dodoor.clock.Clock` — so code written against that protocol reads
simulated time here.

Events live in one of two places. :meth:`EventLoop.call_at` puts them on a
binary heap, for times in any order (task completions). A :class:`Channel` is
a FIFO for events scheduled in time order — every message of a fixed delay,
the next arrival of a sorted trace — so it needs no heap: the loop merges the
heap's top with each channel's head. Both draw sequence numbers from one
counter, so the merged order is exactly the order one heap would give; the
channels only save the two heap operations per event (most events are
messages).

A :class:`Mailbox` holds messages whose arrival runs nothing — the receiver
only reads them at its next event (the load store's node reports). They take
a sequence number like any event but never enter the loop: the reader takes
every message delivered before the event it is running, which is what
delivering each one as an event would have left for it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from typing import Any, Callable

# (time_ms, seq, fn, args); seq is unique, so comparisons never reach fn
Event = tuple[float, int, Callable[..., Any], tuple[Any, ...]]


class EventLoop:
    """Runs callbacks at simulated times, earliest first, ties in scheduling order."""

    __slots__ = ("_heap", "_seq", "_channels", "now", "seq_now", "events_run")

    def __init__(self, start_ms: float = 0.0) -> None:
        self._heap: list[Event] = []
        self._seq = itertools.count(1)
        self._channels: list[deque[Event]] = []
        self.now = float(start_ms)
        self.seq_now = 0  # sequence number of the event running now (0: none yet)
        self.events_run = 0

    def now_ms(self) -> float:
        """The current simulated time (the :class:`~dodoor.clock.Clock` protocol)."""
        return self.now

    def call_at(self, time_ms: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at ``time_ms`` (never in the past)."""
        if not time_ms >= self.now:  # also rejects NaN
            raise ValueError(f"cannot schedule at {time_ms} ms, the clock is at {self.now} ms")
        heapq.heappush(self._heap, (time_ms, next(self._seq), fn, args))

    def call_later(self, delay_ms: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` ``delay_ms`` from now."""
        self.call_at(self.now + delay_ms, fn, *args)

    def channel(self) -> "Channel":
        """A new FIFO of events in time order, merged into this loop's order."""
        channel = Channel(self)
        self._channels.append(channel._queue)
        return channel

    @property
    def pending(self) -> int:
        return len(self._heap) + sum(len(q) for q in self._channels)

    def next_time(self) -> float:
        """Time of the next event, ``inf`` when there is none."""
        event = self._peek()[0]
        return math.inf if event is None else event[0]

    def _peek(self) -> tuple[Event | None, deque[Event] | None]:
        """The next event and the channel queue holding it (None: the heap)."""
        heap = self._heap
        event = heap[0] if heap else None
        source = None
        for queue in self._channels:
            if queue and (event is None or queue[0] < event):
                event = queue[0]
                source = queue
        return event, source

    def run(self, until_ms: float = math.inf, max_events: int | None = None) -> int:
        """Run events up to and including ``until_ms``, then set the clock to it;
        returns how many ran.

        ``max_events`` bounds one call so a caller can report progress between
        slices of a long run.
        """
        heap = self._heap
        channels = self._channels
        pop = heapq.heappop
        ran = 0
        limit = math.inf if max_events is None else max_events
        while ran < limit:
            # the merge of _peek, inlined: this is the hottest loop of a run
            event = heap[0] if heap else None
            source = None
            for queue in channels:
                if queue and (event is None or queue[0] < event):
                    event = queue[0]
                    source = queue
            if event is None or event[0] > until_ms:
                break
            if source is None:
                pop(heap)
            else:
                source.popleft()
            self.now = event[0]
            self.seq_now = event[1]
            event[2](*event[3])
            ran += 1
        self.events_run += ran
        if ran < limit and until_ms != math.inf and until_ms > self.now:
            self.now = until_ms  # like SimPy: the clock reaches the horizon asked for
        return ran


class Channel:
    """Events whose times never decrease in the order they are scheduled.

    Messages of one fixed delay sent as the clock advances are such a stream;
    so is a sorted trace's next arrival. Scheduling out of order is an error.
    """

    __slots__ = ("_loop", "_queue", "_seq", "_last")

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._queue: deque[Event] = deque()
        self._seq = loop._seq  # the loop's counter: one order across heap and channels
        self._last = -math.inf

    def __len__(self) -> int:
        return len(self._queue)

    def call_at(self, time_ms: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at ``time_ms``: not before the clock nor this channel's last event."""
        self.push(time_ms, fn, args)

    def push(self, time_ms: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """:meth:`call_at` with the arguments already in a tuple (saves a repack)."""
        if not (time_ms >= self._last and time_ms >= self._loop.now):  # also rejects NaN
            raise ValueError(f"cannot schedule at {time_ms} ms on a channel at {self._last} ms "
                             f"(clock at {self._loop.now} ms)")
        self._last = time_ms
        self._queue.append((time_ms, next(self._seq), fn, args))


class Mailbox:
    """Messages delivered at ``time_ms`` that no event handles (see the module docstring).

    Posts must come in delivery order (one fixed delay, sent as the clock
    advances); :meth:`take` returns, oldest first, those delivered before the
    event running now — in the loop's order, so a message due at the same
    time as that event counts only if it was sent first.
    """

    __slots__ = ("_loop", "_queue", "_seq", "_last")

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._queue: deque[tuple[float, int, Any]] = deque()
        self._seq = loop._seq
        self._last = -math.inf

    def __len__(self) -> int:
        return len(self._queue)

    def post(self, time_ms: float, item: Any) -> None:
        """Deliver ``item`` at ``time_ms`` (not before the clock nor the last post)."""
        if not (time_ms >= self._last and time_ms >= self._loop.now):  # also rejects NaN
            raise ValueError(f"cannot deliver at {time_ms} ms in a mailbox at {self._last} ms "
                             f"(clock at {self._loop.now} ms)")
        self._last = time_ms
        self._queue.append((time_ms, next(self._seq), item))

    def take(self) -> list[tuple[float, Any]]:
        """(delivery time, item) of every message delivered before the running event."""
        queue = self._queue
        if not queue:
            return []
        now = (self._loop.now, self._loop.seq_now)
        out = []
        while queue and queue[0][:2] < now:
            time_ms, _, item = queue.popleft()
            out.append((time_ms, item))
        return out
