"""Inference on a Triton Inference Server over gRPC: the backend of `swapstream serve --inference triton://HOST:PORT`.

One `TritonInference` per server holds one gRPC channel (tritonclient's gRPC client, whose calls are thread-safe);
`backend(model)` gives each manifest model an `InferenceBackend` over it:
- the frame stages, which run in worker threads, call `run(model, faces)` (or a `TritonModelBackend`'s `run`),
  which blocks that worker until the answer is back;
- code on an event loop awaits `infer(model, faces)`, which runs the same call in a worker thread.
Why the synchronous client in the worker threads rather than tritonclient's asyncio client on a loop thread of its
own: the thread hop to and from that loop measured 0.1-0.7 ms more per request at p50 (bench/triton_infer.py,
"aio + loop thread" rows), for nothing the frame stages need. One channel means one reconnection policy.

Triton down or unreachable: each request has a deadline and fails with `TritonUnavailable`, quickly (a refused
connection fails at once). After such a failure the connection answers `TritonUnavailable` at once, without a
request, for `RETRY_INTERVAL_S`; then the next request tries Triton again. So a Triton that stops answering
without refusing (a dead host) costs one deadline per interval, not one per frame. The channel reconnects in the
background with a backoff capped at `RECONNECT_BACKOFF_MAX_MS`, so requests succeed again well within a second of
Triton's return, with no new object.

At start `check()` makes sure Triton has every model ready, with the manifest's input and output names, shapes and
data types and, where Triton's config carries it (`swapstream_sha256`, as `export --triton` and `swapstream triton`
write it), the manifest's sha256.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from numpy.typing import NDArray

from stream_server.errors import (
    ConfigError,
    RemoteInferenceError,
    TritonInferenceError,
    TritonModelError,
    TritonUnavailable,
)
from swapstream.manifest import ModelEntry
from swapstream.triton_model import SHA256_PARAMETER, TRITON_DATATYPES, triton_model_name

log = logging.getLogger(__name__)

URL_SCHEME = "triton"
DEFAULT_GRPC_PORT = 8001
# Per request: a frame whose faces take longer than this is better shown unswapped.
DEFAULT_TIMEOUT_S = 1.0
# After Triton failed to answer, how long requests fail at once before the next one tries Triton again.
RETRY_INTERVAL_S = 0.5
# gRPC's reconnect backoff grows to 120 s by default; capped so a returning Triton is found within half a second.
RECONNECT_BACKOFF_MIN_MS = 100
RECONNECT_BACKOFF_MAX_MS = 500
_MAX_MESSAGE_BYTES = 2**31 - 1  # batches of large faces exceed gRPC's 4 MB default
# gRPC codes that mean "no Triton answered", as opposed to Triton refusing the request.
_UNREACHABLE_CODES = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"})


def parse_triton_url(url: str) -> str:
    """`triton://HOST[:PORT]` -> `HOST:PORT` for gRPC (port 8001 by default); ConfigError naming the flag if bad."""
    parts = urlsplit(url)
    where = f"--inference {url}"
    if parts.scheme != URL_SCHEME or not parts.hostname:
        raise ConfigError(f"{where}: expected triton://HOST:PORT (Triton's gRPC endpoint)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"{where}: only triton://HOST:PORT is understood, without a path, query or user")
    try:
        port = parts.port or DEFAULT_GRPC_PORT
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


class TritonInference:
    """The stream server's connection to Triton for the manifest's models (see the module docstring)."""

    def __init__(self, url: str, entries: Sequence[ModelEntry], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        import tritonclient.grpc as grpcclient

        self.address = parse_triton_url(url) if "://" in url else url
        self.url = f"{URL_SCHEME}://{self.address}"
        self.provider = f"Triton {self.address}"
        self.timeout_s = timeout_s
        self._entries = {entry.name: entry for entry in entries}
        self._max_batch: dict[str, int] = {}
        self._client: Any = grpcclient.InferenceServerClient(self.address, channel_args=channel_args())
        self._closed = False
        # While Triton is not answering: when it stopped, why, and when the next request may try it again.
        self._down_since: float | None = None
        self._down_reason = ""
        self._retry_at = 0.0

    def entry(self, model: str) -> ModelEntry:
        """The manifest entry called `model` (KeyError listing the names there are)."""
        try:
            return self._entries[model]
        except KeyError:
            raise KeyError(f"no model {model!r}; the manifest has {', '.join(self._entries)}") from None

    @property
    def available(self) -> bool:
        """False from a request Triton did not answer until one it answers (for /healthz)."""
        return self._down_since is None

    # ------------------------------------------------------------------------------------------ inference

    def run(self, model: str, faces: NDArray[Any]) -> list[NDArray[Any]]:
        """Outputs of `model` for `faces`, in the manifest's output order; blocks the calling (worker) thread."""
        entry = self.entry(model)
        spec = entry.inputs[0]
        batch = np.ascontiguousarray(faces, dtype=np.dtype(spec.dtype))
        if batch.ndim != len(spec.shape) or tuple(batch.shape[1:]) != tuple(spec.tail):
            raise ValueError(f"model {model!r} takes {spec.name} of shape {list(spec.shape)}, got {list(faces.shape)}")
        limit = self._max_batch.get(model)
        if limit is None or len(batch) <= limit:
            return self._request(entry, batch)
        # Triton refuses batches over the model's max_batch_size: send it in parts, join the answers
        parts = [self._request(entry, batch[i:i + limit]) for i in range(0, len(batch), limit)]
        return [np.concatenate([part[k] for part in parts]) for k in range(len(entry.outputs))]

    async def infer(self, model: str, faces: NDArray[Any]) -> list[NDArray[Any]]:
        """`run` for code on an event loop: the request runs in a worker thread, the loop is never blocked."""
        return await asyncio.to_thread(self.run, model, faces)

    def _request(self, entry: ModelEntry, batch: NDArray[Any]) -> list[NDArray[Any]]:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        if self._closed:
            raise RemoteInferenceError(f"the Triton connection to {self.address} is closed")
        name = triton_model_name(entry.name)
        down_since = self._down_since
        if down_since is not None and time.monotonic() < self._retry_at:
            raise TritonUnavailable(f"Triton at {self.address} has not answered for "
                                    f"{time.monotonic() - down_since:.1f} s ({self._down_reason}); trying again "
                                    f"every {RETRY_INTERVAL_S:g} s")
        spec = entry.inputs[0]
        request = grpcclient.InferInput(spec.name, list(batch.shape), TRITON_DATATYPES[spec.dtype])
        request.set_data_from_numpy(batch)
        wanted = [grpcclient.InferRequestedOutput(output.name) for output in entry.outputs]
        try:
            result = self._client.infer(name, [request], outputs=wanted, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            error = self._error(f"inference of {name}", exc)
            if isinstance(error, TritonUnavailable):
                self._went_down(exc)
            raise error from exc
        if down_since is not None:
            self._came_back(down_since)
        # views of the response's bytes, read-only: the frame stages read the outputs and write new arrays
        return [result.as_numpy(output.name) for output in entry.outputs]

    def _went_down(self, exc: Any) -> None:
        now = time.monotonic()
        self._retry_at = now + RETRY_INTERVAL_S
        if self._down_since is None:
            self._down_since = now
            self._down_reason = str(exc.status())
            log.warning("Triton at %s does not answer (%s): %s", self.address, exc.status(), exc.message())

    def _came_back(self, down_since: float) -> None:
        if self._down_since is not None:
            self._down_since = None
            log.warning("Triton at %s answers again, after %.1f s", self.address, time.monotonic() - down_since)

    def _error(self, what: str, exc: Any) -> RemoteInferenceError:
        if str(exc.status()) in _UNREACHABLE_CODES:
            return TritonUnavailable(f"Triton at {self.address} did not answer {what} within {self.timeout_s:g} s "
                                     f"({exc.status()}): {exc.message()}")
        return TritonInferenceError(f"Triton at {self.address} refused {what}: {exc}")

    # ------------------------------------------------------------------------------------------ start-up check

    def check(self) -> None:
        """Every manifest model ready on Triton and matching the manifest; TritonModelError naming what is not,
        TritonUnavailable when Triton does not answer."""
        from tritonclient.utils import InferenceServerException

        missing: list[str] = []
        problems: list[str] = []
        for entry in self._entries.values():
            name = triton_model_name(entry.name)
            try:
                if not self._client.is_model_ready(name, client_timeout=self.timeout_s):
                    missing.append(name)
                    continue
                response = self._client.get_model_config(name, client_timeout=self.timeout_s)
            except InferenceServerException as exc:
                error = self._error(f"the readiness of {name}", exc)
                if isinstance(error, TritonUnavailable):
                    raise error from exc
                missing.append(name)
                continue
            problems += self._compare(entry, response.config)
        if missing:
            problems.insert(0, f"not ready (or not there): {', '.join(missing)}; serve them with `swapstream triton "
                               "--models MODELS`, or point Triton at `swapstream export --triton`'s MODELS/triton")
        if problems:
            raise TritonModelError(f"Triton at {self.url} does not serve the manifest's models: "
                                   + "; ".join(problems))
        log.info("Triton at %s serves %s", self.url, ", ".join(self._entries))

    def _compare(self, entry: ModelEntry, config: Any) -> list[str]:
        """What differs between the manifest entry and Triton's config of it (empty when they agree)."""
        from tritonclient.grpc import model_config_pb2

        name = triton_model_name(entry.name)
        problems = []
        if config.max_batch_size < 1:
            problems.append(f"{name} has batching off (max_batch_size {config.max_batch_size})")
        self._max_batch[entry.name] = max(1, int(config.max_batch_size))
        for role, declared, served in (("input", entry.inputs, config.input), ("output", entry.outputs, config.output)):
            by_name = {tensor.name: tensor for tensor in served}
            for spec in declared:
                tensor = by_name.get(spec.name)
                if tensor is None:
                    problems.append(f"{name} has no {role} {spec.name!r} (it has {sorted(by_name)})")
                    continue
                data_type = model_config_pb2.DataType.Name(tensor.data_type)
                if list(tensor.dims) != list(spec.tail) or data_type != f"TYPE_{TRITON_DATATYPES[spec.dtype]}":
                    problems.append(f"{name} {role} {spec.name!r} is {data_type} {list(tensor.dims)} per item, the "
                                    f"manifest says {spec.dtype} {list(spec.tail)}")
        parameter = config.parameters.get(SHA256_PARAMETER)
        if parameter is None:
            log.warning("Triton's config of %s has no %s parameter: cannot check it serves %s", name,
                        SHA256_PARAMETER, entry.file)
        elif parameter.string_value.lower() != entry.sha256:
            problems.append(f"{name} serves a file with sha256 {parameter.string_value}, the manifest's {entry.file} "
                            f"has {entry.sha256}: export again or restart Triton on this export")
        return problems

    # ------------------------------------------------------------------------------------------ backends, close

    def backend(self, model: str) -> TritonModelBackend:
        """The stream server's backend interface for one manifest model over this connection."""
        return TritonModelBackend(self, self.entry(model))

    def close(self) -> None:
        """Close the channel (idempotent); later requests raise RemoteInferenceError."""
        if not self._closed:
            self._closed = True
            self._client.close()


def channel_args() -> list[tuple[str, int | str]]:
    """gRPC channel options for a Triton client: no message size limit, fast reconnects, round robin."""
    return [
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MIN_MS),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MIN_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
        # a name resolving to several Triton pods (a headless Service) gets requests spread over all of them
        ("grpc.lb_policy_name", "round_robin"),
    ]


class TritonModelBackend:
    """One manifest model on Triton behind the server's backend interface (`run`, `provider`, `entry`, `close`)."""

    def __init__(self, connection: TritonInference, entry: ModelEntry) -> None:
        self.connection = connection
        self.entry = entry
        self.provider = connection.provider

    def run(self, batch: NDArray[Any]) -> list[NDArray[Any]]:
        """Outputs for `batch` in the manifest's output order (blocks the calling worker thread)."""
        return self.connection.run(self.entry.name, batch)

    async def infer(self, batch: NDArray[Any]) -> list[NDArray[Any]]:
        """`run` for code on an event loop."""
        return await self.connection.infer(self.entry.name, batch)

    def close(self) -> None:
        """Nothing per model: the shared connection is closed by `TritonInference.close()`."""
