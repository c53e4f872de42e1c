"""Plain HTTP endpoints: /healthz, /metrics, /api/models (the digits endpoints are in digits_api.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stream_server.session import STATE_KEY


async def handle_healthz(request: web.Request) -> web.Response:
    """GET /healthz: models loaded, inference provider, live sessions."""
    state = request.app[STATE_KEY]
    return web.json_response({
        "status": "ok",
        "pipeline": state.config.pipeline,
        "jitter_buffer": state.config.jitter_buffer,
        "models": sorted(state.backends),
        "provider": state.provider,
        "sessions": len(state.registry),
        "max_sessions": state.config.max_sessions,
    })


async def handle_metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text exposition."""
    body = request.app[STATE_KEY].metrics.render()
    return web.Response(text=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Prometheus-Format": "0.0.4"})


def _entry_summary(entry: Any) -> dict[str, Any]:
    def get(name: str) -> Any:
        return entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)

    return {key: get(key) for key in ("name", "kind", "direction", "face_size", "precision")}


async def handle_models(request: web.Request) -> web.Response:
    """GET /api/models: the manifest's models, the provider and the default options for new sessions."""
    state = request.app[STATE_KEY]
    defaults = state.config.default_options
    return web.json_response({
        "models": [_entry_summary(e) for e in state.manifest_entries],
        "provider": state.provider,
        "pipeline": state.config.pipeline,
        "defaults": {"model": defaults.model, "swap": defaults.swap, "feather": defaults.feather,
                     "color": defaults.color, "boxes": defaults.boxes},
    })


def add_routes(app: web.Application) -> None:
    """Register the plain HTTP endpoints."""
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/api/models", handle_models)
