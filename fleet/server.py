"""A real Triton Inference Server serving every model of a manifest, started and stopped through PyTriton.

Start-up: read the manifest, open each model with ONNX Runtime (checking its file's sha256), make sure the three
ports are free, start `tritonserver` (bundled in the nvidia-pytriton wheel) with every model in a private model
repository, run by ONNX Runtime inside its Python backend (fleet/repository.py, fleet/backend_model.py); wait
until Triton reports each model ready: Triton answers `/v2/health/ready` before the models are loaded, so only
per-model readiness means the fleet can take requests. Stop: PyTriton unloads the models and stops tritonserver,
which removes the Python backend's shared-memory regions from /dev/shm.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import socket
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from pytriton.client.auth import create_auth_headers
from pytriton.triton import Triton, TritonConfig

from fleet.bindings import ModelBinding, plan_binding
from fleet.config import TritonServeConfig
from fleet.errors import FleetError, TritonStartError
from fleet.model_files import InferenceBackend, ModelLoadError, load_backend, load_manifest
from fleet.repository import write_backend_repository

log = logging.getLogger(__name__)

READY_POLL_S = 0.2
# tritonserver waits this long for in-flight requests when stopping (its default, 30 s, holds a SIGTERM up).
EXIT_TIMEOUT_S = 5


class TritonModelServer:
    """`swapstream triton`'s server: `start()`, then `serve_until(stop_event)`, then `stop()` (or a `with` block)."""

    def __init__(self, config: TritonServeConfig) -> None:
        self.config = config
        self.bindings: list[ModelBinding] = []
        self.startup_s: float | None = None
        self._triton: Triton | None = None
        self._repository: Path | None = None

    def __enter__(self) -> TritonModelServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    @property
    def grpc_url(self) -> str:
        """`host:port` of the gRPC endpoint for a client on this machine (what `triton://` URLs name)."""
        return f"{self.config.client_host}:{self.config.grpc_port}"

    def start(self) -> None:
        """Load and check the models, start tritonserver, return once every model is ready (TritonStartError if not)."""
        started = time.monotonic()
        config = self.config
        manifest = load_manifest(config.models_dir)
        if not manifest.models:
            raise ModelLoadError(f"{config.models_dir / 'manifest.json'} lists no models to serve")
        _check_ports_free(config)
        self.bindings = [plan_binding(entry, config.models_dir, config.max_batch, config.max_queue_delay_us)
                         for entry in manifest.models]
        threads = config.threads or os.cpu_count() or 1
        # opened here as the media servers open them (sha256, tensor names and shapes, errors naming the file),
        # then closed: tritonserver's Python backend runs its own copies
        for entry in manifest.models:
            _close(load_backend(entry, config.models_dir, intra_op_threads=1))
        try:
            self._repository = Path(tempfile.mkdtemp(prefix="swapstream-triton-"))
            write_backend_repository(self._repository, self.bindings, config.models_dir, threads)
            triton = Triton(config=TritonConfig(
                grpc_address=config.host, grpc_port=config.grpc_port,
                http_address=config.host, http_port=config.http_port,
                metrics_address=config.host, metrics_port=config.metrics_port,
                exit_timeout_secs=EXIT_TIMEOUT_S, log_verbose=0, model_repository=self._repository,
                # tritonserver loads the repository's models itself, before it answers: a model that fails must
                # neither stop it nor hold readiness (PyTriton would wait 120 s), so that the wait below reports
                # the model and Triton's reason at once
                exit_on_error=False, strict_readiness=False,
            ))
            self._triton = triton
            try:
                with _interpreter_libraries_first():
                    triton.run()
            except Exception as exc:  # PyTriton and tritonclient raise their own, untyped, errors
                names = ", ".join(binding.name for binding in self.bindings)
                raise TritonStartError(f"Triton could not start or load the models ({names}): {exc}") from exc
            self._wait_until_ready(started + config.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def _wait_until_ready(self, deadline: float) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        waiting = [binding.name for binding in self.bindings]
        last_error = ""
        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            while waiting:
                try:
                    waiting = [name for name in waiting if not client.is_model_ready(name, client_timeout=2.0)]
                except InferenceServerException as exc:
                    last_error = f" (last answer: {exc})"
                if not waiting:
                    break
                failed = _failed_models(client, waiting, self._access_headers())
                if failed:
                    reasons = "; ".join(f"{name}: {reason}" for name, reason in failed.items())
                    raise TritonStartError(f"Triton could not load {reasons} (the whole reason is in its log above)")
                if not self.alive:
                    raise TritonStartError(f"tritonserver exited while loading {', '.join(waiting)}; its log is "
                                           "above")
                if time.monotonic() > deadline:
                    raise TritonStartError(f"Triton on {self.grpc_url} did not report models ready within "
                                           f"{self.config.ready_timeout_s:g} s: {', '.join(waiting)}{last_error}")
                time.sleep(READY_POLL_S)
        finally:
            client.close()

    def _access_headers(self) -> dict[str, str]:
        # PyTriton guards Triton's model-repository endpoints (load, unload, index) with a token of its own
        token = self._triton.get_access_token() if self._triton is not None else None
        return create_auth_headers(token, "grpc") if token else {}

    @property
    def alive(self) -> bool:
        """Whether tritonserver is running (the models run inside it)."""
        return self._triton is not None and bool(self._triton.is_alive())

    def serve_until(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Serve until `stop` is set; TritonStartError if tritonserver dies first."""
        while not stop.wait(poll_s):
            if not self.alive:
                raise TritonStartError("tritonserver stopped serving unexpectedly; its log is above")

    def stop(self) -> None:
        """Unload the models and stop tritonserver (idempotent)."""
        triton, self._triton = self._triton, None
        if triton is not None:
            triton.stop()
        repository, self._repository = self._repository, None
        if repository is not None:
            shutil.rmtree(repository, ignore_errors=True)


def _close(backend: InferenceBackend) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def _failed_models(client: Any, names: list[str], headers: dict[str, str]) -> dict[str, str]:
    """Those of `names` whose load failed, with Triton's reason (from its repository index; empty if unknown)."""
    from tritonclient.utils import InferenceServerException

    try:
        index = client.get_model_repository_index(headers=headers, client_timeout=2.0)
    except InferenceServerException:
        return {}
    return {model.name: model.reason.split("\n")[0] for model in index.models
            if model.name in names and model.state == "UNAVAILABLE" and model.reason}


def _check_ports_free(config: TritonServeConfig) -> None:
    """TritonStartError naming the flag of a port something already listens on.

    tritonserver's gRPC endpoint binds with SO_REUSEPORT, so a second Triton on a taken gRPC port would start and
    share it with the first instead of failing; this check refuses that up front.
    """
    flags = {"--grpc-port": config.grpc_port, "--http-port": config.http_port, "--metrics-port": config.metrics_port}
    for flag, port in flags.items():
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR: a port left in TIME_WAIT by a Triton that just stopped is free; a listener is not
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((config.host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise TritonStartError(f"{flag} {port} on {config.host} is already in use (another Triton or "
                                           f"service listens there); choose another port with {flag}") from exc
                raise FleetError(f"cannot bind {config.host}:{port} ({flag}): {exc}") from exc


@contextlib.contextmanager
def _interpreter_libraries_first() -> Iterator[None]:
    """Put this interpreter's lib directory first on LD_LIBRARY_PATH while tritonserver starts.

    PyTriton hands tritonserver a copy of this process's environment; tritonserver's Python backend stub links
    libpython3.X.so, which the dynamic loader would otherwise find in the system's library folder, a different
    Python build than the one running the models. Restored afterwards, so nothing else in this process sees it.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    previous = os.environ.get("LD_LIBRARY_PATH")
    if libdir:
        os.environ["LD_LIBRARY_PATH"] = libdir if not previous else f"{libdir}{os.pathsep}{previous}"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = previous
