"""HTTP plumbing shared by the scheduler and load-store apps.

JSON error bodies, bearer-token auth, msgpack responses, the ``/metrics``
handler (the collectors are in :mod:`dodoor.metrics`), tracked background
tasks, and running an app under uvloop.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any, Awaitable, Callable, Coroutine

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from dodoor.auth_token import auth_headers  # noqa: F401  (the apps take it from here)
from dodoor.errors import DodoorError
from dodoor.wire import CONTENT_TYPE, encode

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, field: str, reason: str, **extra: Any) -> web.Response:
    """``{"error": {"field", "reason"}}`` with ``status``."""
    body: dict[str, Any] = {"error": {"field": field, "reason": reason}}
    body.update(extra)
    return web.json_response(body, status=status)


def msgpack_response(msg: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(msg), status=status, content_type=CONTENT_TYPE)


def auth_middleware(token: str | None):
    """Every path except GET /healthz needs ``Authorization: Bearer <token>`` when set."""
    expected = f"Bearer {token}".encode() if token else b""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path != "/healthz":
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return json_error(401, "authorization", "missing or wrong bearer token")
        return await handler(request)

    return check


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error body; nothing escapes as a traceback page."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_error(413, "body", exc.text or "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, "request", exc.reason or "error")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "server", "internal error; see the server log")


async def read_body(request: web.Request) -> bytes:
    """The request body; an over-size body raises the 413 the error middleware renders."""
    return await request.read()


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """``GET /metrics``: ``registry`` in the Prometheus text format."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


class BackgroundTasks:
    """Owned background tasks: tracked in a set, cancelled and awaited on close.

    A cleanup_ctx owns one of these, so no task outlives its app.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task %s failed: %r", task.get_name(), task.exception())

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()


def run(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, on uvloop when it is installed."""
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        web.run_app(app, host=host, port=port, loop=loop, print=None, access_log=None,
                    shutdown_timeout=10.0)
    except OSError as exc:  # typically the port is taken: one clear line, exit 2
        raise DodoorError(f"cannot serve on {host}:{port}: {exc}") from exc
