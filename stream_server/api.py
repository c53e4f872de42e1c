"""Plain HTTP endpoints: /healthz, /metrics, /api/models, /api/digits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import cv2
import numpy as np
from aiohttp import web

from stream_server.app import STATE_KEY
from stream_server.errors import SignalingError
from swapstream.manifest import ModelEntry
from stream_server.metrics import EXPOSITION_CONTENT_TYPE
from stream_server.signaling import read_body, read_body_bytes

DIGIT_SIDE = 16


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
    """What /api/models says of a model (the client records name and sha256 in its C2PA manifest)."""
    summary: dict[str, Any] = {"name": entry.name, "kind": entry.kind, "direction": entry.direction,
                               "face_size": entry.face_size, "precision": entry.precision, "sha256": entry.sha256}
    if entry.consent is not None:
        summary["consent"] = entry.consent.to_json()
    return summary


async def handle_models(request: web.Request) -> web.Response:
    """GET /api/models: the manifest's models, the provider and the default options for new sessions."""
    state = request.app[STATE_KEY]
    return web.json_response({
        "models": [_entry_summary(e) for e in state.catalog.entries],
        "provider": state.provider,
        "pipeline": state.config.pipeline,
        "defaults": state.config.default_options.as_dict(),
    })


def digit_input_from_json(data: Any) -> np.ndarray:
    """A 16x16 image given as 16 rows of 16 numbers or 256 numbers (ink bright), as 1x256 float32 in [0,1]."""
    if isinstance(data, dict):
        data = data.get("image", data.get("pixels"))
    try:
        pixels = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise SignalingError(f"POST /api/digits: the image must be numbers: {exc}") from exc
    if pixels.shape not in ((DIGIT_SIDE, DIGIT_SIDE), (DIGIT_SIDE * DIGIT_SIDE,)):
        raise SignalingError(f"POST /api/digits: expected 16 lists of 16 numbers or 256 numbers, "
                             f"got an array of shape {pixels.shape}")
    if not np.isfinite(pixels).all() or pixels.min() < 0:
        raise SignalingError("POST /api/digits: pixel values must be finite and >= 0 (0..1, or 0..255)")
    if pixels.max() > 1.0:
        pixels = pixels / 255.0  # 8-bit values
    return np.clip(pixels.reshape(1, DIGIT_SIDE * DIGIT_SIDE), 0.0, 1.0)


def digit_input_from_png(body: bytes) -> np.ndarray:
    """A PNG of any size, made grey, 16x16 and ink-bright (dark ink on light paper is inverted)."""
    image = cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SignalingError("POST /api/digits: the body is not a decodable PNG")
    if image.ndim == 3 and image.shape[2] == 4:
        # Transparent background: ink is wherever alpha is high.
        grey = image[:, :, 3].astype(np.float32) / 255.0
    else:
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        grey = image.astype(np.float32) / (65535.0 if image.dtype == np.uint16 else 255.0)
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        if border.mean() > 0.5:
            grey = 1.0 - grey
    small = cv2.resize(grey, (DIGIT_SIDE, DIGIT_SIDE), interpolation=cv2.INTER_AREA)
    return np.clip(small.reshape(1, -1), 0.0, 1.0).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    exp = np.exp(shifted)
    return exp / exp.sum()


async def handle_digits(request: web.Request) -> web.Response:
    """POST /api/digits: a 16x16 image (JSON array or PNG) -> {"digit", "probabilities"[10]}."""
    state = request.app[STATE_KEY]
    if state.digits_model is None:
        raise web.HTTPServiceUnavailable(text="no digits model in the manifest (--models)")
    if request.content_type == "image/png":
        pixels = digit_input_from_png(await read_body_bytes(request))
    else:
        text = await read_body(request)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SignalingError(f"POST /api/digits: body is not valid JSON: {exc}") from exc
        pixels = digit_input_from_json(data)
    backend = state.backends[state.digits_model]
    outputs = await asyncio.get_running_loop().run_in_executor(state.executor, backend.run, pixels)
    logits = np.asarray(outputs[0], dtype=np.float64).reshape(-1)
    if logits.shape != (10,):
        raise web.HTTPInternalServerError(text=f"digits model returned shape {logits.shape}, expected 10 logits")
    probabilities = softmax(logits)
    return web.json_response({"digit": int(np.argmax(probabilities)),
                              "probabilities": [round(float(p), 6) for p in probabilities],
                              "model": state.digits_model})


def add_routes(app: web.Application) -> None:
    """Register the plain HTTP endpoints."""
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/api/models", handle_models)
    app.router.add_post("/api/digits", handle_digits)
