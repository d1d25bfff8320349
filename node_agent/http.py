"""HTTP plumbing of the agent: auth, JSON errors, reading and writing wire messages."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import web

from dodoor.errors import DecodeError
from dodoor.wire import CONTENT_TYPE, decode, encode

log = logging.getLogger(__name__)
M = TypeVar("M")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/healthz"})
MAX_BODY = web.AppKey("max_body_bytes", int)


def error_response(status: int, field: str, reason: str) -> web.Response:
    """The protocol's error body: ``{"error": {"field", "reason"}}``."""
    return web.json_response({"error": {"field": field, "reason": reason}}, status=status)


def auth_middleware(token: str | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Require ``Authorization: Bearer <token>`` on everything but /healthz when a token is set."""
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None and request.path not in OPEN_PATHS:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return error_response(401, "authorization", "missing or wrong bearer token")
        return await handler(request)

    return middleware


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Routing failures and bugs answer with the protocol's JSON error body too."""
    try:
        return await handler(request)
    except BadRequest:
        raise  # already a JSON error
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, "request", exc.reason or "error")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "server", "internal error; see the agent log")


class BadRequest(web.HTTPException):
    """Raised inside a handler to answer with a JSON error."""

    def __init__(self, status: int, field: str, reason: str) -> None:
        self.status_code = status
        super().__init__(text=error_response(status, field, reason).text,
                         content_type="application/json")


async def read_message(request: web.Request, expect: type[M]) -> tuple[M, int]:
    """Read and decode the body as ``expect``; 413 over the cap, 400 when malformed."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise BadRequest(413, "body", f"larger than {request.app.get(MAX_BODY, 0)} bytes") from exc
    try:
        return decode(body, expect=expect), len(body)
    except DecodeError as exc:
        raise BadRequest(400, "body", str(exc)) from exc


def wire_response(msg: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(msg), status=status, content_type=CONTENT_TYPE)
