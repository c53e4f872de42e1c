"""Models folders that join and leave the running server: a finished Studio job's `DIR/<job>/models`.

`ModelFolders.add(models_dir)` (the Studio's `on_models_ready`) reads the folder's manifest, opens its swap models
in a worker thread (the event loop keeps serving), gives their backends to the inference batcher and then puts
them into the live catalog in one swap: from the next frame on a session may pick them over its control channel.
A name already served (`--models`, another job) refuses the whole folder with a ModelLoadError and nothing of it
stays open. `remove(models_dir)` (`on_models_removed`, before the job's files are deleted) takes the folder's
models out of the catalog, moves each session using one of them to the model of the same direction (its client
is told, with the reason) and leaves their backends to the live catalog, which frees them once no frame holds them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path

from stream_server.backends import InferenceBackend, load_backend, load_manifest
from stream_server.batching import InferenceBatcher
from stream_server.errors import ModelLoadError
from stream_server.live_catalog import LiveCatalog, close_backends
from stream_server.session import Session
from swapstream.manifest import Manifest

logger = logging.getLogger(__name__)


def _open_swap_models(manifest: Manifest) -> dict[str, InferenceBackend]:
    """A backend for every swap model of `manifest` (all or none: those opened before a failure are closed)."""
    backends: dict[str, InferenceBackend] = {}
    try:
        for entry in manifest.of_kind("swap"):
            backends[entry.name] = load_backend(entry, manifest.models_dir)
    except BaseException:
        close_backends(backends)
        raise
    return backends


class ModelFolders:
    """Adds and removes whole models folders on the running server (see the module docstring); on the event loop."""

    def __init__(self, live: LiveCatalog, batcher: InferenceBatcher | None,
                 sessions: Iterable[Session]) -> None:
        """`batcher`: None for the echo pipeline (models are listed, nothing runs them); `sessions`: the live
        sessions, iterated at each removal (the session registry)."""
        self._live = live
        self._batcher = batcher
        self._sessions = sessions
        self._added: dict[Path, tuple[str, ...]] = {}

    async def add(self, models_dir: Path) -> None:
        """Serve the swap models of `models_dir` from now on; ModelLoadError (nothing added) when the folder is
        unusable or one of its names is already served."""
        manifest = load_manifest(models_dir)
        swap = manifest.of_kind("swap")
        if not swap:
            raise ModelLoadError(f"{manifest.path}: no swap model to serve")
        served = sorted({entry.name for entry in swap} & set(self._live.current.names))
        if served:
            raise ModelLoadError(f"{manifest.path}: already served (by --models or another Studio job): "
                                 f"{', '.join(served)}; a job of another name can serve its models")
        backends = await asyncio.to_thread(_open_swap_models, manifest)
        try:
            # the batcher first: a frame may pick a model as soon as the catalog lists it
            if self._batcher is not None:
                self._batcher.add_backends(backends)
            try:
                self._live.add(swap, backends)
            except BaseException:
                if self._batcher is not None:
                    self._batcher.remove_backends(backends)
                raise
        except KeyError as exc:  # the batcher still runs a model of that name (a removal under way)
            close_backends(backends)
            raise ModelLoadError(f"{manifest.path}: {exc.args[0]}") from exc
        except BaseException:
            close_backends(backends)
            raise
        self._added[models_dir] = tuple(backends)
        logger.info("models joined the live catalog: %s (from %s)", ", ".join(backends), models_dir)

    async def remove(self, models_dir: Path) -> None:
        """Stop serving the models that `add(models_dir)` added; sessions using one move to another model."""
        names = [name for name in self._added.pop(models_dir, ()) if name in self._live.current.names]
        if not names:
            return
        replacements = self._live.remove(names)
        for session in self._sessions:
            replacement = replacements.get(session.options.model)
            if replacement is not None:
                session.move_to_model(replacement, f"model {session.options.model} was removed from the server "
                                                   f"(its Studio job was deleted); now swapping with {replacement}")
        logger.info("models left the live catalog: %s (from %s)", ", ".join(names), models_dir)
