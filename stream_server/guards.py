"""Request guards every endpoint shares: the bearer token, the Origin of browser POSTs, bounded bodies, safe JSON.

The token is checked by path in one middleware (`token_middleware`), so every route under /api/ follows --token
without its handler asking, and /metrics does unless --public-metrics; /healthz and the page stay open. Bodies
are read within --max-body-kb (413) and --body-timeout (408, against clients that trickle a body forever), and
JSON that would crash the parser (nesting deeper than the recursion limit) is a 400 like any other bad JSON.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Collection
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from stream_server.addresses import normalized_origin
from stream_server.errors import AuthError, SignalingError

JSON_CONTENT_TYPE = "application/json"
OPEN_PATHS = ("/healthz",)
TOKEN_PREFIXES = ("/api/",)
METRICS_PATH = "/metrics"


def require_bearer(request: web.Request, token: str | None) -> None:
    """Require `Authorization: Bearer <token>` when there is a token; AuthError (401) otherwise."""
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise AuthError("missing or wrong bearer token: send 'Authorization: Bearer <token>' (the server's --token)")


def needs_token(path: str, public_metrics: bool) -> bool:
    """Whether the middleware checks the token on `path` (the signaling handlers check their own)."""
    if path in OPEN_PATHS:
        return False
    if path == METRICS_PATH:
        return not public_metrics
    return path.startswith(TOKEN_PREFIXES)


def token_middleware(token: str | None, public_metrics: bool) -> Middleware:
    """The middleware that puts /api/* (and /metrics unless `public_metrics`) behind `token`."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is not None and needs_token(request.path, public_metrics):
            require_bearer(request, token)
        return await handler(request)

    return check


def require_content_type(request: web.Request, expected: str, what: str) -> None:
    """415 unless the body is `expected` (a browser cannot send application/json cross-site without asking)."""
    if request.content_type != expected:
        raise web.HTTPUnsupportedMediaType(text=f"{what}: Content-Type must be {expected}, "
                                                f"got {request.headers.get('Content-Type') or 'none'}")


def check_origin(request: web.Request, allowed: Collection[str], what: str) -> None:
    """403 for a browser request from a page of another origin than the server's own or --allowed-origin's.

    Requests without Origin (the Python client, OBS, curl) pass: they are not made by a web page. The server's
    own origin is matched on host and port only, so a TLS-terminating proxy in front does not lock the page out.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return
    normalized = normalized_origin(origin)
    if normalized is not None:
        if normalized in {normalized_origin(entry) for entry in allowed}:
            return
        if normalized.split("://", 1)[1].lower() == request.host.lower():
            return
    raise web.HTTPForbidden(text=f"{what}: a page from Origin {origin!r} may not use this server; the server "
                                 "accepts its own origin and those given with --allowed-origin")


async def read_bounded(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The body, at most `limit` bytes (413, before reading when Content-Length says so) within `timeout_s` (408)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length,
                                            text=f"request body of {request.content_length} bytes is over the "
                                                 f"limit of {limit} bytes (--max-body-kb)")
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout(text=f"the request body did not arrive within {timeout_s:g} s "
                                          "(--body-timeout)") from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit + 1,
                                            text=f"request body is over the limit of {limit} bytes (--max-body-kb)") \
            from exc


def parse_json(text: str | bytes, what: str) -> Any:
    """`text` as JSON; SignalingError (400) for anything the parser refuses, including nesting too deep for it."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise SignalingError(f"{what}: the JSON is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise SignalingError(f"{what}: body is not valid JSON: {exc}") from exc
