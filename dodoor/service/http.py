"""The HTTP kit of the three daemons: the scheduler, the load store and the agent.

* :func:`daemon_app` — an application with the body limit, JSON errors and auth;
* error bodies ``{"error": {"field", "reason"}}`` (:func:`json_error`, or raise
  :class:`BadRequest` from anywhere in a handler);
* bearer-token auth on every path but ``GET /healthz`` (:func:`auth_middleware`);
* wire messages in and out through ``dodoor/wire.py`` (:func:`read_message`,
  :func:`wire_response`);
* one size limit: a body over the app's limit answers 413 naming the limit,
  whichever handler read it;
* ``GET /metrics`` (:func:`metrics_handler`; the collectors are in
  :mod:`dodoor.service.metrics`);
* owned background tasks (:class:`BackgroundTasks`), entered in a cleanup_ctx;
* :func:`run`: serve until SIGTERM, then drain.

Each daemon keeps its state in one object under one ``web.AppKey``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from dodoor.errors import DecodeError, DodoorError
from dodoor.service.auth_token import auth_headers
from dodoor.wire import CONTENT_TYPE, decode, encode

log = logging.getLogger(__name__)
M = TypeVar("M")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/healthz"})
MAX_BODY = web.AppKey("max_body_bytes", int)
# what aiohttp allows a draining server to finish in-flight requests in, after SIGTERM
DRAIN_S = 10.0


def daemon_app(token: str | None, max_body_bytes: int) -> web.Application:
    """A daemon's application: bodies up to ``max_body_bytes``, JSON errors, ``token`` auth."""
    app = web.Application(client_max_size=max_body_bytes,
                          middlewares=[error_middleware, auth_middleware(token)])
    app[MAX_BODY] = max_body_bytes
    return app


def json_error(status: int, field: str, reason: str, **extra: Any) -> web.Response:
    """``{"error": {"field", "reason"}}`` with ``status`` (and ``extra`` top-level keys)."""
    body: dict[str, Any] = {"error": {"field": field, "reason": reason}}
    body.update(extra)
    return web.json_response(body, status=status)


class BadRequest(web.HTTPException):
    """Raised inside a handler to answer with :func:`json_error`'s body."""

    def __init__(self, status: int, field: str, reason: str) -> None:
        self.status_code = status
        super().__init__(text=json_error(status, field, reason).text,
                         content_type="application/json")


def auth_middleware(token: str | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every path but ``/healthz`` needs ``Authorization: Bearer <token>`` when one is set."""
    expected = auth_headers(token).get("Authorization", "").encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected and request.path not in OPEN_PATHS:
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
    except BadRequest:
        raise  # its body is already the JSON error
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "body", f"larger than {request.app.get(MAX_BODY, 0)} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, "request", exc.reason or "error")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "server", "internal error; see the server log")


async def read_message(request: web.Request, expect: type[M],
                       field: str = "body") -> tuple[M, int]:
    """The body decoded as ``expect`` and its size; a 400 naming ``field`` when malformed.

    An over-size body raises the 413 that :func:`error_middleware` renders.
    """
    body = await request.read()
    try:
        return decode(body, expect=expect), len(body)
    except DecodeError as exc:
        raise BadRequest(400, field, str(exc)) from exc


def wire_response(msg: Any, status: int = 200) -> web.Response:
    """``msg`` encoded by ``dodoor/wire.py``."""
    return web.Response(body=encode(msg), status=status, content_type=CONTENT_TYPE)


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """``GET /metrics``: ``registry`` in the Prometheus text format."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


class BackgroundTasks:
    """Owned background tasks: tracked in a set, cancelled and awaited on close.

    A cleanup_ctx owns one of these (``async with BackgroundTasks() as tasks``),
    so no task outlives its app.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    async def __aenter__(self) -> BackgroundTasks:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task:
        """Run ``coro`` until it ends or :meth:`close` cancels it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task %s failed: %r", task.get_name(), task.exception())

    async def close(self) -> None:
        """Cancel every task still running and wait for all of them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()


def run(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then drain; on uvloop when it is installed."""
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
                    shutdown_timeout=DRAIN_S)
    except OSError as exc:  # typically the port is taken: one clear line, exit 2
        raise DodoorError(f"cannot serve on {host}:{port}: {exc}") from exc
