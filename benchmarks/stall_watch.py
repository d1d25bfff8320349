"""Where a daemon's event loop stood while it was late, for benchmarks/latency_probe.py.

A loop-lag p99 hides a rare long block (a 1 s block is one late tick among
thousands), so the probe also keeps the slowest requests whole and this watchdog
thread samples the loop thread's stack while its ticker is overdue: once the
tick is ``threshold_s`` late, then every ``every_s`` until it comes (at most
``per_stall`` samples a stall). A sample whose stack ends in the loop's poll means
the loop was idle and the process was not running (a CPU wait), not blocked.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback


class StallWatch:
    """Samples the stack of ``thread_id`` while ``last_tick`` (perf_counter) is stale."""

    def __init__(self, threshold_s: float = 0.1, every_s: float = 0.1, per_stall: int = 8,
                 poll_s: float = 0.01) -> None:
        self.threshold_s, self.every_s, self.per_stall, self.poll_s = \
            threshold_s, every_s, per_stall, poll_s
        self.thread_id = 0
        self.last_tick = 0.0
        self.in_gc = False  # set by the probe's GC callback
        self.stalls: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, thread_id: int) -> None:
        self.thread_id = thread_id
        self.last_tick = time.perf_counter()
        self.stalls = []
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stall-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)

    def _run(self) -> None:
        seen_tick, taken, next_at = -1.0, 0, 0.0
        while not self._stop.wait(self.poll_s):
            tick, now = self.last_tick, time.perf_counter()
            late = now - tick
            if tick != seen_tick:  # a new tick: the previous stall, if any, is over
                seen_tick, taken, next_at = tick, 0, tick + self.threshold_s
            if late < self.threshold_s or taken >= self.per_stall or now < next_at:
                continue
            self.stalls.append(self._sample(late))
            taken += 1
            next_at = now + self.every_s

    def _sample(self, late: float) -> dict:
        frames = sys._current_frames()
        loop = frames.get(self.thread_id)
        others = {}
        for ident, frame in frames.items():
            if ident in (self.thread_id, threading.get_ident()):
                continue
            name = next((t.name for t in threading.enumerate() if t.ident == ident), str(ident))
            others[name] = [f"{f.filename}:{f.lineno} {f.name}"
                            for f in traceback.extract_stack(frame)[-4:]]
        stack = traceback.extract_stack(loop) if loop is not None else []
        return {"t": time.time(), "late_s": late, "in_gc": self.in_gc,
                "stack": [f"{f.filename}:{f.lineno} {f.name}" for f in stack[-25:]],
                "others": others}
