"""The catalog in force, replaced atomically while the server serves: models join (a finished Studio job's export)
and leave (its job deleted) without a restart.

`LiveCatalog.current` is the snapshot in force (an immutable `catalog.ModelCatalog`); `add` and `remove` put the
next snapshot in its place under a lock, so a reader sees one whole snapshot, old or new. A frame holds its swap
model with `use(model)` from resolving it until its inference has returned. A model removed while frames hold it
keeps its backend open until the last of them lets go; then it is *retired*: `on_retired` gets its backend (the
app takes it out of the inference batcher and closes it). A frame whose options still name a model removed a
moment ago (a session's options are read once per frame, before its faces are located) gets the model the
removal named as its replacement, the one its session is moved to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager

from stream_server.backends import InferenceBackend
from stream_server.catalog import ModelCatalog, SwapModelInfo
from stream_server.errors import ConfigError, ModelLoadError
from swapstream.manifest import ModelEntry

logger = logging.getLogger(__name__)

RetiredHook = Callable[[Mapping[str, InferenceBackend]], None]
"""Gets the backends of removed models that no frame holds any more, by name (called from any thread)."""


def close_backends(backends: Mapping[str, InferenceBackend]) -> None:
    """Close every backend; one that fails to close is logged and the rest are still closed."""
    for name, backend in backends.items():
        try:
            backend.close()
        except Exception:  # noqa: BLE001 - freeing the others matters more than one failure
            logger.exception("model %s: closing its backend failed", name)


class LiveCatalog:
    """The served models now (`current`), their atomic replacement, and the lifetime of removed models' backends."""

    def __init__(self, catalog: ModelCatalog, on_retired: RetiredHook = close_backends) -> None:
        self._current = catalog
        self._on_retired = on_retired
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}
        """Frames holding each model now, by name."""
        self._leaving: dict[str, InferenceBackend] = {}
        """Removed models that frames still hold."""
        self._replacements: dict[str, str] = {}
        """Removed swap model -> the model (name or direction) a frame still naming it gets."""

    @property
    def current(self) -> ModelCatalog:
        """The snapshot in force (one attribute read: never a half-made catalog)."""
        return self._current

    @contextmanager
    def use(self, model: str) -> Iterator[SwapModelInfo]:
        """The swap model `model` resolves to now, held until the block ends (catalog.SwapModels)."""
        with self._lock:
            info = self._resolve(model)
            self._held[info.name] = self._held.get(info.name, 0) + 1
        try:
            yield info
        finally:
            retired: dict[str, InferenceBackend] = {}
            with self._lock:
                self._held[info.name] -= 1
                if not self._held[info.name]:
                    del self._held[info.name]
                    if info.name in self._leaving:
                        retired[info.name] = self._leaving.pop(info.name)
            if retired:
                self._retire(retired)

    def _resolve(self, model: str) -> SwapModelInfo:
        try:
            return self._current.resolve(model)
        except ConfigError:
            replacement = self._replacements.get(model)
            if replacement is None:
                raise
            return self._current.resolve(replacement)

    def add(self, entries: Iterable[ModelEntry], backends: Mapping[str, InferenceBackend]) -> ModelCatalog:
        """Serve these models too, from now on; ModelLoadError (nothing changed) when a name is already served or
        still held by frames after its removal. Returns the new snapshot."""
        entries = tuple(entries)
        with self._lock:
            leaving = sorted(entry.name for entry in entries if entry.name in self._leaving)
            if leaving:
                raise ModelLoadError(f"models {', '.join(leaving)} are still being removed; try again in a moment")
            self._current = self._current.with_models(entries, backends)
            for entry in entries:
                self._replacements.pop(entry.name, None)
            return self._current

    def remove(self, names: Collection[str]) -> dict[str, str]:
        """Stop serving the models `names` from now on (ConfigError, nothing changed, for a name not served).

        Returns, for each removed swap model, what its users move to: its direction when a model of that
        direction remains, else the first remaining swap model (none when no swap model remains). Backends no
        frame holds are retired at once, the others when their last frame lets go.
        """
        retired: dict[str, InferenceBackend] = {}
        with self._lock:
            before = self._current
            after = before.without_models(names)
            replacements: dict[str, str] = {}
            for entry in before.entries:
                if entry.name not in names:
                    continue
                replacement = _replacement(after, entry)
                if replacement is not None:
                    replacements[entry.name] = self._replacements[entry.name] = replacement
                if self._held.get(entry.name):
                    self._leaving[entry.name] = before.backends[entry.name]
                else:
                    retired[entry.name] = before.backends[entry.name]
            self._current = after
        if retired:
            self._retire(retired)
        return replacements

    def _retire(self, backends: Mapping[str, InferenceBackend]) -> None:
        logger.info("models %s: no frame uses them any more; their backends are freed", ", ".join(sorted(backends)))
        self._on_retired(backends)

    def close(self) -> None:
        """At shutdown, once no frame runs: close every backend, the served ones and removed ones still held."""
        with self._lock:
            leaving, self._leaving = self._leaving, {}
        self._current.close()
        close_backends(leaving)


def _replacement(remaining: ModelCatalog, removed: ModelEntry) -> str | None:
    if removed.kind != "swap" or removed.direction is None:
        return None
    if any(entry.direction == removed.direction for entry in remaining.of_kind("swap")):
        return removed.direction
    return remaining.swap_names[0] if remaining.swap_names else None
