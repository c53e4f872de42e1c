"""The models of `swapstream serve --inference triton://HOST:PORT`: swap models on Triton, the rest in-process.

The manifest still comes from `--models`: it names the models, their tensors and sha256s, and Triton is checked
against it at start (every swap model ready, same tensors, same sha256), with an error naming what is missing and
the Triton URL. Only the swap models go to Triton: they run on every frame of every session, which is what a GPU
fleet and its cross-server batching are for. The digits model stays in this process: a 16x16 classifier answering
one HTTP request at a time costs well under a millisecond here, less than the hop to Triton, and /api/digits then
keeps working while Triton is down. With `--inference-fallback local` the swap models are also opened in-process
at start, to run the frames Triton fails meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stream_server.backends import InferenceBackend, load_backend, load_manifest
from stream_server.backends.triton import TritonInference
from stream_server.batching import DirectLane
from stream_server.catalog import ModelCatalog
from stream_server.errors import TritonUnavailable
from stream_server.metrics import ServerMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteModels:
    """The Triton connection and, with --inference-fallback local, the in-process swap backends; closed together."""

    connection: TritonInference
    fallback: Mapping[str, InferenceBackend] | None

    @property
    def available(self) -> bool:
        """Whether Triton answered the last request (False from a failure until it answers again)."""
        return self.connection.available

    def lane(self, catalog: ModelCatalog, metrics: ServerMetrics) -> DirectLane:
        """The one lane all sessions send their faces through: straight to Triton, failures counted in /metrics."""
        return DirectLane({name: catalog.backends[name] for name in catalog.swap_names}, self.fallback,
                          on_batch=metrics.batch_run, on_failure=lambda _exc: metrics.inference_unavailable.inc())

    def close(self) -> None:
        """Close the fallback backends and the gRPC channel."""
        for backend in (self.fallback or {}).values():
            backend.close()
        self.connection.close()


def open_remote_models(models_dir: Path, url: str, fallback: bool) -> tuple[ModelCatalog, RemoteModels]:
    """The catalog for `--inference URL` (swap models on Triton, others in-process) and its RemoteModels.

    Raises TritonModelError naming the models Triton lacks or serves differently, TritonUnavailable when Triton
    does not answer, ModelLoadError for a bad local file; whatever was opened before a failure is closed again.
    """
    manifest = load_manifest(models_dir)
    swap = [entry for entry in manifest.models if entry.kind == "swap"]
    connection = TritonInference(url, swap)
    opened: list[InferenceBackend] = []
    try:
        try:
            connection.check()
        except TritonUnavailable as exc:
            raise TritonUnavailable(f"--inference {connection.url}: no Triton answers there ({exc}); start it "
                                    "first (`swapstream triton --models MODELS`) or fix the address") from exc
        backends: dict[str, InferenceBackend] = {entry.name: connection.backend(entry.name) for entry in swap}
        for entry in manifest.models:
            if entry.kind != "swap":
                backends[entry.name] = load_backend(entry, manifest.models_dir)
                opened.append(backends[entry.name])
        local: dict[str, InferenceBackend] | None = None
        if fallback:
            local = {}
            for entry in swap:
                local[entry.name] = load_backend(entry, manifest.models_dir)
                opened.append(local[entry.name])
            log.info("--inference-fallback local: %s loaded in-process for when Triton fails", ", ".join(local))
    except BaseException:
        for backend in opened:
            backend.close()
        connection.close()
        raise
    return ModelCatalog(manifest.models, backends), RemoteModels(connection, local)
