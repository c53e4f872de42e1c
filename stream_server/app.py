"""The aiohttp application factory: routes, shared state under app[STATE_KEY], clean shutdown."""

from __future__ import annotations

import importlib.util
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from stream_server import api, digits_api, signaling
from stream_server.batching import InferenceBatcher
from stream_server.config import ServerConfig
from stream_server.errors import ModelLoadError, ServerError, SignalingError
from stream_server.metrics import ServerMetrics
from stream_server.pipeline import FramePipeline, ModelCatalog, PipelineSettings
from stream_server.session import STATE_KEY, ServerState, SessionLimitError, SessionRegistry, UnknownSessionError

logger = logging.getLogger(__name__)

MINIMAL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>swapstream</title></head>
<body style="font-family:sans-serif">
<h1>swapstream</h1>
<p>Live face swap over WebRTC. The full page ships in <code>clients/web</code>; this is the minimal one.</p>
<button id="start">Start camera</button> <span id="status"></span>
<div style="display:flex;gap:1em"><video id="local" autoplay muted playsinline width="480"></video>
<video id="remote" autoplay playsinline width="480"></video></div>
<script type="module">
const status = (t) => { document.getElementById("status").textContent = t; };
document.getElementById("start").onclick = async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}});
    document.getElementById("local").srcObject = stream;
    const pc = new RTCPeerConnection();
    pc.createDataChannel("control");
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    pc.ontrack = (e) => { document.getElementById("remote").srcObject = new MediaStream([e.track]); };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => { if (pc.iceGatheringState === "complete") r();
      else pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && r(); });
    const res = await fetch("/offer", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({sdp: pc.localDescription.sdp, type: "offer", options: {}})});
    const body = await res.json();
    if (!res.ok) { status("server: " + body.error); return; }
    await pc.setRemoteDescription(body);
    status("connected: session " + body.session_id);
  } catch (err) { status("error: " + err); }
};
</script></body></html>
"""


def _find_web_root() -> Path | None:
    """The browser page's folder (clients/web), if the clients package ships it."""
    spec = importlib.util.find_spec("clients")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        root = Path(location) / "web"
        if (root / "index.html").is_file():
            return root
    return None


def _load_models(config: ServerConfig) -> tuple[list[Any], dict[str, Any]]:
    """Every manifest entry and its loaded backend; ModelLoadError names the file."""
    if config.models_dir is None:
        return [], {}
    from stream_server.inference import load_backend, load_manifest

    manifest = load_manifest(config.models_dir)
    entries = list(manifest.models)
    backends = {entry.name: load_backend(entry, config.models_dir) for entry in entries}
    return entries, backends


@web.middleware
async def _error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn the server's errors into JSON responses with the right status; the server keeps serving."""
    try:
        return await handler(request)
    except signaling.AuthError as exc:
        return web.json_response({"error": str(exc)}, status=401, headers={"WWW-Authenticate": "Bearer"})
    except SignalingError as exc:
        logger.info("%s %s -> 400: %s", request.method, request.path, exc)
        return web.json_response({"error": str(exc)}, status=400)
    except SessionLimitError as exc:
        return web.json_response({"error": str(exc)}, status=503, headers={"Retry-After": "5"})
    except UnknownSessionError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.text or exc.reason}, status=exc.status)
    except ServerError as exc:
        logger.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": str(exc)}, status=500)


def create_app(config: ServerConfig) -> web.Application:
    """Build the app: load models (errors now, not at the first frame), wire routes, shutdown hooks."""
    entries, backends = _load_models(config)
    catalog = ModelCatalog.from_entries(entries)
    if config.pipeline == "swap":
        if not catalog.names:
            raise ModelLoadError(f"--models {config.models_dir}: the manifest has no swap model")
        try:
            catalog.resolve(config.default_options.model)
        except ServerError as exc:
            raise ModelLoadError(f"--model {config.default_options.model}: {exc}") from exc
    metrics = ServerMetrics()
    swap_backends = {name: backends[name] for name in catalog.names}
    batcher = None
    if config.pipeline == "swap":
        def on_batch(n: int) -> None:
            metrics.batches.inc()
            metrics.batched_faces.inc(n)

        batcher = InferenceBatcher(swap_backends, config.batch_wait_ms, config.max_batch, on_batch=on_batch)
    state = ServerState(
        config=config,
        metrics=metrics,
        executor=ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="swapstream-frame"),
        catalog=catalog,
        backends=backends,
        manifest_entries=entries,
        batcher=batcher,
        web_root=_find_web_root(),
        digits_model=next((e.name for e in entries if e.kind == "digits"), None),
    )
    state.registry = SessionRegistry(state)
    settings = PipelineSettings(mode=config.pipeline, detect_every=config.detect_every,
                                max_faces=config.max_faces, disclosure_mark=config.disclosure_mark)

    def make_pipeline(session_id: str) -> FramePipeline:
        infer = None
        if batcher is not None:
            def infer(model: str, faces: Any) -> Any:
                return batcher.infer(model, faces, session=session_id)

        return FramePipeline(settings, catalog, infer)

    state.pipeline_factory = make_pipeline

    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_error_middleware])
    app[STATE_KEY] = state
    signaling.add_routes(app)
    api.add_routes(app)
    digits_api.add_routes(app)
    _add_page_routes(app, state)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


def _add_page_routes(app: web.Application, state: ServerState) -> None:
    root = state.web_root

    async def index(request: web.Request) -> web.StreamResponse:
        if root is not None:
            return web.FileResponse(root / "index.html")
        return web.Response(text=MINIMAL_PAGE, content_type="text/html")

    app.router.add_get("/", index)
    if root is not None:
        app.router.add_static("/static", root)


async def _on_shutdown(app: web.Application) -> None:
    state = app[STATE_KEY]
    logger.info("closing %d session(s)", len(state.registry))
    await state.registry.close_all()


async def _on_cleanup(app: web.Application) -> None:
    state = app[STATE_KEY]
    if state.batcher is not None:
        state.batcher.close()
    state.executor.shutdown(wait=True)
