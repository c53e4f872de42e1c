"""The aiohttp application: the server's state, built once and never changed, its routes, clean shutdown.

`create_app(config)` loads the models (errors now, not at the first frame), builds the `ServerState` that every
handler reaches through `app[STATE_KEY]`, and wires the routes and the shutdown hooks. Each part gets only what
it uses: the session registry its `SessionServices`, a session's frame stages their settings, catalog and
inference lane. Where the swap models run is `--inference`: in this process behind the micro-batcher (`local`),
or on Triton (`triton://HOST:PORT`, stream_server.remote) with no batcher here, since Triton batches across
sessions and servers. The served models are the one thing that changes while the server runs: the state holds a
`LiveCatalog` whose snapshot a finished Studio job's models join without a restart (`--studio DIR`,
stream_server.studio, wired to the catalog by `ModelFolders`; local inference only).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from provenance.facts import ModelFacts
from provenance.signer import SigningCredentials, load_signing_credentials
from stream_server.backends import InferenceBackend, load_models
from stream_server.batching import BatcherLane, InferenceBatcher
from stream_server.catalog import ModelCatalog
from stream_server.config import ServerConfig, SessionOptions
from stream_server.errors import AuthError, ConfigError, ModelLoadError, ServerError, SignalingError
from stream_server.guards import token_middleware
from stream_server.live_catalog import LiveCatalog, close_backends
from stream_server.metrics import ServerMetrics
from stream_server.model_folders import ModelFolders
from stream_server.pipeline import FramePipeline, Infer, PipelineSettings
from stream_server.recording import RecordingSettings
from stream_server.release import free_native_memory
from stream_server.remote import RemoteModels, open_remote_models
from stream_server.session import SessionLimitError, SessionRegistry, SessionServices, UnknownSessionError

if TYPE_CHECKING:
    from stream_server.studio.config import StudioConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerState:
    """Everything the handlers share, reached through app[STATE_KEY]; built once by create_app, never changed."""

    config: ServerConfig
    metrics: ServerMetrics
    executor: ThreadPoolExecutor
    """The frame workers (also used for the digits model and for closing a session's stages)."""
    models: LiveCatalog
    """Every served model (manifest entry + backend): `models.current` is the snapshot in force."""
    batcher: InferenceBatcher | None
    """None for the echo pipeline and with --inference triton://."""
    registry: SessionRegistry
    remote: RemoteModels | None
    """The Triton connection with --inference triton:// (None: every model runs in this process)."""

    @property
    def catalog(self) -> ModelCatalog:
        """The served models now (a Studio job's models join while the server runs)."""
        return self.models.current

    @property
    def backends(self) -> Mapping[str, InferenceBackend]:
        """Every served model's backend, by name."""
        return self.catalog.backends

    @property
    def digits_model(self) -> str | None:
        """The first digits model's name, if one is served."""
        digits = self.catalog.of_kind("digits")
        return digits[0].name if digits else None

    @property
    def provider(self) -> str:
        """The inference providers the loaded backends run on, comma-separated ("none" without models)."""
        providers = sorted({backend.provider for backend in self.backends.values()})
        return ",".join(providers) if providers else "none"


STATE_KEY = web.AppKey("swapstream_state", ServerState)
ENCODER_THREADS = min(32, (os.cpu_count() or 1) + 4)
"""Threads of the loop's default executor, where aiortc encodes every outgoing frame (asyncio's own default size)."""

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


def _load_catalog(config: ServerConfig) -> tuple[ModelCatalog, RemoteModels | None]:
    """Every model of --models with its open backend (none without --models), and the Triton connection with
    --inference triton://; ModelLoadError names the file, TritonModelError what Triton lacks."""
    if config.models_dir is None:
        return ModelCatalog((), {}), None
    if config.remote_inference:
        return open_remote_models(config.models_dir, config.inference, config.inference_fallback == "local")
    manifest, backends = load_models(config.models_dir)
    return ModelCatalog(manifest.models, backends), None


def _check_swap_models(config: ServerConfig, catalog: ModelCatalog) -> None:
    """The swap pipeline needs a swap model, and --model must name one; ModelLoadError otherwise."""
    if config.pipeline != "swap":
        return
    if not catalog.swap_names:
        raise ModelLoadError(f"--models {config.models_dir}: the manifest has no swap model")
    try:
        catalog.resolve(config.default_options.model)
    except ServerError as exc:
        raise ModelLoadError(f"--model {config.default_options.model}: {exc}") from exc


@web.middleware
async def _error_middleware(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Turn the server's errors into JSON responses with the right status; the server keeps serving."""
    try:
        return await handler(request)
    except AuthError as exc:
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
    except Exception as exc:  # noqa: BLE001 - the last line: never a plain-text traceback to the client
        logger.exception("%s %s failed unexpectedly", request.method, request.path)
        return web.json_response({"error": f"internal server error ({type(exc).__name__}); the server logged it"},
                                 status=500)


def create_app(config: ServerConfig, studio: StudioConfig | None = None) -> web.Application:
    """Build the app: load models (errors now, not at the first frame), the state, routes and shutdown hooks.

    `studio`: the Studio's settings where they are not the ones `--studio DIR --studio-max-mb N` means (tests and
    benchmarks use a smaller recipe); given, it turns the Studio on.
    """
    # Imported here: the handlers import STATE_KEY from this module.
    from stream_server import api, digits_api, signaling

    if studio is not None and config.remote_inference:
        raise ConfigError("the Studio trains models for this server's own inference: it cannot be used with "
                          f"--inference {config.inference} (Triton serves only the models exported to it)")
    credentials = _signing_credentials(config)
    catalog, remote = _load_catalog(config)
    try:
        _check_swap_models(config, catalog)
    except BaseException:
        catalog.close()
        if remote is not None:
            remote.close()
        raise
    metrics = ServerMetrics()
    batcher = None
    shared_lane: Infer | None = None
    if config.pipeline == "swap" and remote is not None:
        shared_lane = remote.lane(catalog, metrics)
    elif config.pipeline == "swap":
        batcher = InferenceBatcher({name: catalog.backends[name] for name in catalog.swap_names}, config.batch_wait_ms,
                                   config.max_batch, on_batch=metrics.batch_run)
    executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="swapstream-frame")

    def retire(backends: Mapping[str, InferenceBackend]) -> None:
        if batcher is not None:
            batcher.remove_backends(backends)
        close_backends(backends)

    live = LiveCatalog(catalog, on_retired=retire)
    settings = PipelineSettings(mode=config.pipeline, detect_every=config.detect_every,
                                max_faces=config.max_faces, disclosure_mark=config.disclosure_mark)

    def make_stages(session_id: str, notify: Callable[[str], None]) -> FramePipeline:
        lane = BatcherLane(batcher, session_id) if batcher is not None else shared_lane
        return FramePipeline(settings, live, lane, notify=notify)

    def check_options(options: SessionOptions) -> None:
        if config.pipeline == "swap" and options.swap:
            live.current.resolve(options.model)

    services = SessionServices(executor=executor, metrics=metrics, make_stages=make_stages,
                               check_options=check_options, connect_timeout_s=config.connect_timeout_s,
                               stats_interval_s=config.stats_interval_s, idle_timeout_s=config.idle_timeout_s,
                               max_pixels=config.max_pixels, free_memory=free_native_memory,
                               recording=_recording_settings(config, live, credentials),
                               record_all=config.record_all)
    state = ServerState(
        config=config,
        metrics=metrics,
        executor=executor,
        models=live,
        batcher=batcher,
        registry=SessionRegistry(config.max_sessions, services),
        remote=remote,
    )
    middlewares = [_error_middleware, token_middleware(config.token, config.public_metrics)]
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=middlewares)
    app[STATE_KEY] = state
    signaling.add_routes(app)
    api.add_routes(app)
    digits_api.add_routes(app)
    _add_page_routes(app, _find_web_root())
    app.on_startup.append(_start_encoder_threads)
    if studio is None and config.studio_dir is not None:
        from stream_server.studio.config import StudioConfig

        studio = StudioConfig.for_server(config.studio_dir, config.studio_max_mb, config.models_dir)
    if studio is not None:
        _install_studio(app, studio, ModelFolders(live, batcher, state.registry))
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


async def _start_encoder_threads(app: web.Application) -> None:
    """Give the loop a default executor whose threads all run from the start.

    aiortc encodes on the loop's default executor, and asyncio's starts a thread whenever every thread is busy,
    up to its limit: the thread count then creeps up with load over hours, which no teardown can tell from a leak.
    """
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=ENCODER_THREADS, thread_name_prefix="swapstream-encode")
    all_started = threading.Barrier(ENCODER_THREADS)
    await asyncio.gather(*(loop.run_in_executor(executor, all_started.wait, 10.0) for _ in range(ENCODER_THREADS)))
    loop.set_default_executor(executor)


def _install_studio(app: web.Application, studio: StudioConfig, folders: ModelFolders) -> None:
    """`--studio DIR`: the Studio's routes and jobs; a finished job's models join the live catalog (at startup
    too, for jobs finished before), a deleted job's leave it. The app's start fails with StudioUnavailable,
    naming the fix, when the children's interpreter lacks the training extra."""
    from stream_server.studio.api import install
    from stream_server.studio.service import StudioService

    install(app, StudioService(studio, on_models_ready=folders.add, on_models_removed=folders.remove))


def _signing_credentials(config: ServerConfig) -> SigningCredentials | None:
    """With --record, the signing certificate and key, checked now: CertificateError names the file before
    anything loads or is served (not at the first recording)."""
    if config.record_dir is None or config.signing is None:
        if config.signing is not None:
            logger.info("--sign-cert/--sign-key given without --record: this server writes no recordings to sign")
        return None
    return load_signing_credentials(config.signing)


def _recording_settings(config: ServerConfig, models: LiveCatalog,
                        credentials: SigningCredentials | None) -> RecordingSettings | None:
    """--record: the folder (made if missing), the credentials, and how a frame's options name its model."""
    if config.record_dir is None:
        return None
    try:
        config.record_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--record {config.record_dir}: cannot make the folder: {exc.strerror or exc}") from exc
    if credentials is None:
        logger.warning("recording to %s WITHOUT C2PA signing (--record-unsigned)", config.record_dir)
    manifest = f"{config.models_dir}/manifest.json"

    def model_of(options: SessionOptions) -> ModelFacts | None:
        if config.pipeline != "swap" or not options.swap:
            return None
        catalog = models.current  # a Studio job's model may have joined since the start
        name = catalog.resolve(options.model).name
        entry = next(entry for entry in catalog.entries if entry.name == name)
        return ModelFacts.from_json(entry.to_json(), f"{manifest} model {name!r}")

    return RecordingSettings(config.record_dir, credentials, model_of)


def _add_page_routes(app: web.Application, root: Path | None) -> None:
    """GET / (the browser page, or the minimal one) and its files under /static."""

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
    state.models.close()
    if state.remote is not None:
        state.remote.close()
