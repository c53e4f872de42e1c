"""Plain HTTP endpoints: /healthz, /metrics, /api/models (the digits endpoints are in digits_api.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stream_server.app import STATE_KEY
from stream_server.metrics import EXPOSITION_CONTENT_TYPE
from swapstream.manifest import ModelEntry


async def handle_healthz(request: web.Request) -> web.Response:
    """GET /healthz: models, where inference runs, and the load; 503 (same body, with a reason) when full, so a
    load balancer sends new sessions elsewhere."""
    state = request.app[STATE_KEY]
    sessions, most = len(state.registry), state.config.max_sessions
    body = {
        "status": "ok" if sessions < most else "full",
        "pipeline": state.config.pipeline,
        "jitter_buffer": state.config.jitter_buffer,
        "models": sorted(state.backends),
        "provider": state.provider,
        "inference": state.config.inference,
        "inference_available": state.remote.available if state.remote is not None else True,
        "sessions": sessions,
        "max_sessions": most,
        "free": max(0, most - sessions),
    }
    if sessions < most:
        return web.json_response(body)
    body["reason"] = f"full: {sessions} of {most} sessions (--max-sessions); new sessions get 503 here"
    return web.json_response(body, status=503, headers={"Retry-After": "5"})


async def handle_metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text exposition."""
    body = request.app[STATE_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": EXPOSITION_CONTENT_TYPE})


def _entry_summary(entry: ModelEntry) -> dict[str, Any]:
    """What /api/models says of a model (the client records name, sha256 and consent in its C2PA manifest);
    `quality_limited`: a Studio model whose target had photos only."""
    summary: dict[str, Any] = {"name": entry.name, "kind": entry.kind, "direction": entry.direction,
                               "face_size": entry.face_size, "precision": entry.precision, "sha256": entry.sha256,
                               "quality_limited": entry.source.get("quality_limited") is True}
    if entry.consent is not None:
        summary["consent"] = entry.consent.to_json()
    return summary


async def handle_models(request: web.Request) -> web.Response:
    """GET /api/models: the served models (a Studio job's join while the server runs), the provider and the
    default options for new sessions."""
    state = request.app[STATE_KEY]
    return web.json_response({
        "models": [_entry_summary(e) for e in state.catalog.entries],
        "provider": state.provider,
        "pipeline": state.config.pipeline,
        "defaults": state.config.default_options.as_dict(),
    })


def add_routes(app: web.Application) -> None:
    """Register the plain HTTP endpoints."""
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/api/models", handle_models)
