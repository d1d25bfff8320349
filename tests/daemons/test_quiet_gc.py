"""A serving daemon's garbage collector: startup objects frozen, young collections rarer."""

from __future__ import annotations

import asyncio
import gc
import weakref

from aiohttp import web

from dodoor.service import http


def test_quiet_gc_freezes_what_exists_and_sets_the_young_and_middle_thresholds():
    before = gc.get_threshold()
    try:
        http.quiet_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (http.GC_YOUNG_THRESHOLD, http.GC_MIDDLE_THRESHOLD,
                                      before[2])

        class Node:
            pass

        # garbage made after the freeze is still collected
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_run_quiets_the_collector_before_serving(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(http, "quiet_gc", lambda: calls.append("quiet_gc"))
    monkeypatch.setattr(web, "run_app", lambda *a, **k: calls.append("run_app"))
    try:
        http.run(web.Application(), "127.0.0.1", 0)
    finally:
        asyncio.get_event_loop_policy().get_event_loop().close()
        asyncio.set_event_loop(None)
    assert calls == ["quiet_gc", "run_app"]
