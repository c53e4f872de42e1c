"""The Studio's HTTP API (the page uses it; so can scripts). Bearer token as on the rest of the server.

    POST   /api/studio/jobs                   multipart: options (JSON) first, then files `a` and `b`
                                              -> 201, Location: /api/studio/jobs/<id>, the job's status
    GET    /api/studio/jobs                   {"jobs": [status, ...]}
    GET    /api/studio/jobs/<id>              status: state queued|extracting|training|exporting|done|failed|
                                              cancelled, progress, losses, faces found per side, error, ...
    GET    /api/studio/jobs/<id>/events       Server-Sent Events: the status at every change, ending after a
                                              final state
    GET    /api/studio/jobs/<id>/preview.png  rows A, A->B, B, B->A from the latest checkpoint
    DELETE /api/studio/jobs/<id>              cancel and remove its files -> the final status

Errors are JSON {"error": ...} with 400 (bad input), 404, 409 (name taken), 413 (too large), 507 (disk full).
`install(app, service)` wires the routes and the service's start/stop into an application.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from stream_server.signaling import check_token
from stream_server.studio.errors import StudioError, UploadError
from stream_server.studio.service import StudioService

logger = logging.getLogger(__name__)

STUDIO_KEY = web.AppKey("studio", StudioService)
KEEP_ALIVE_S = 15.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _studio_handler(handler: Handler) -> Handler:
    """Check the bearer token, then turn Studio errors into JSON answers with their status."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        check_token(request)
        try:
            return await handler(request)
        except StudioError as exc:
            if exc.status >= 500:
                logger.warning("%s %s -> %d: %s", request.method, request.path, exc.status, exc)
            return web.json_response({"error": str(exc)}, status=getattr(exc, "status", 500))

    return guarded


def _service(request: web.Request) -> StudioService:
    return request.app[STUDIO_KEY]


async def handle_create(request: web.Request) -> web.StreamResponse:
    """POST /api/studio/jobs."""
    service = _service(request)
    try:
        job = await service.create_job(request)
    except (ValueError, AssertionError) as exc:  # aiohttp's multipart parser on a malformed body
        raise UploadError(f"malformed multipart upload: {exc}") from exc
    location = f"/api/studio/jobs/{job.id}"
    return web.json_response(service.status(job.id), status=201, headers={"Location": location})


async def handle_list(request: web.Request) -> web.StreamResponse:
    """GET /api/studio/jobs."""
    return web.json_response({"jobs": _service(request).jobs()})


async def handle_get(request: web.Request) -> web.StreamResponse:
    """GET /api/studio/jobs/<id>."""
    return web.json_response(_service(request).status(request.match_info["job_id"]))


async def handle_events(request: web.Request) -> web.StreamResponse:
    """GET /api/studio/jobs/<id>/events: `data: <status JSON>` per change, comments as keep-alives."""
    service = _service(request)
    job_id = request.match_info["job_id"]
    service.status(job_id, detail=False)  # 404 before the stream starts
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    quiet_since = time.monotonic()
    try:
        async for status in service.events(job_id):
            if status is not None:
                await response.write(f"data: {json.dumps(status)}\n\n".encode())
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEP_ALIVE_S:
                await response.write(b": keep-alive\n\n")
                quiet_since = time.monotonic()
        await response.write_eof()
    except ConnectionResetError:
        logger.debug("studio events for %s: the client went away", job_id)
    return response


async def handle_preview(request: web.Request) -> web.StreamResponse:
    """GET /api/studio/jobs/<id>/preview.png."""
    png = _service(request).preview_png(request.match_info["job_id"])
    if png is None:
        return web.json_response({"error": "no preview yet: the first one comes with training's first checkpoint"},
                                 status=404)
    return web.Response(body=png, content_type="image/png",
                        headers={"Cache-Control": "no-store", "X-Preview-Rows": "A,A->B,B,B->A"})


async def handle_delete(request: web.Request) -> web.StreamResponse:
    """DELETE /api/studio/jobs/<id>."""
    return web.json_response(await _service(request).delete(request.match_info["job_id"]))


def add_routes(app: web.Application) -> None:
    """Register the Studio routes (the service must be at app[STUDIO_KEY])."""
    app.router.add_post("/api/studio/jobs", _studio_handler(handle_create))
    app.router.add_get("/api/studio/jobs", _studio_handler(handle_list))
    app.router.add_get("/api/studio/jobs/{job_id}", _studio_handler(handle_get))
    app.router.add_delete("/api/studio/jobs/{job_id}", _studio_handler(handle_delete))
    app.router.add_get("/api/studio/jobs/{job_id}/events", _studio_handler(handle_events))
    app.router.add_get("/api/studio/jobs/{job_id}/preview.png", _studio_handler(handle_preview))


async def _start(app: web.Application) -> None:
    await app[STUDIO_KEY].start()


async def _stop(app: web.Application) -> None:
    # on shutdown, not cleanup: open event streams end here, before aiohttp waits for handlers to finish
    await app[STUDIO_KEY].stop()


def install(app: web.Application, service: StudioService) -> None:
    """Put the Studio into `app`: its service, routes, and start/stop with the app."""
    app[STUDIO_KEY] = service
    add_routes(app)
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)
