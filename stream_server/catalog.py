"""The served models as one immutable snapshot: every manifest entry with its open backend.

The frame stages ask the catalog for a swap model by manifest name or direction (`resolve`, through the one
resolver in swapstream.manifest). Nothing in a catalog changes after it is built: to serve more models (another
models folder, or what a studio job exported) or fewer, build the next snapshot with `with_models` /
`without_models`; `live_catalog.LiveCatalog` holds the snapshot in force and swaps it atomically. The frame
stages reach a model through `SwapModels.use`, which holds it for the frame: a static catalog needs nothing
held, a live one keeps a removed model's backend open until the frames using it are done.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from stream_server.backends import InferenceBackend
from stream_server.errors import ConfigError, ModelLoadError
from swapstream.errors import UnknownModelError
from swapstream.manifest import Direction, ModelEntry, ModelKind, resolve_entry


@dataclass(frozen=True)
class SwapModelInfo:
    """A swap model as the frame stages need it: its manifest name, direction, crop size and output order."""

    name: str
    direction: Direction
    face_size: int
    rgb_index: int
    mask_index: int | None

    @classmethod
    def of(cls, entry: ModelEntry) -> SwapModelInfo:
        """The info of a swap entry (outputs named "rgb" and "mask"; without an "rgb", the first output)."""
        if entry.kind != "swap" or entry.direction is None or entry.face_size is None:
            raise ModelLoadError(f"model {entry.name!r} is not a swap model with a direction and a face size")
        outputs = [spec.name for spec in entry.outputs]
        return cls(name=entry.name, direction=entry.direction, face_size=entry.face_size,
                   rgb_index=outputs.index("rgb") if "rgb" in outputs else 0,
                   mask_index=outputs.index("mask") if "mask" in outputs else None)


class SwapModels(Protocol):
    """Where the frame stages get their swap model: `ModelCatalog` (fixed) or `live_catalog.LiveCatalog`."""

    def use(self, model: str) -> AbstractContextManager[SwapModelInfo]:
        """The swap model `model` resolves to, held (its backend stays open) until the block ends; ConfigError
        lists the choices."""
        ...


class ModelCatalog:
    """Every served model (manifest entry + backend) in one immutable snapshot; see the module docstring."""

    def __init__(self, entries: Iterable[ModelEntry], backends: Mapping[str, InferenceBackend]) -> None:
        """`entries` in the order to list them; `backends` has one backend per entry name, and no others."""
        self._entries = tuple(entries)
        names = [entry.name for entry in self._entries]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ModelLoadError(f"model names repeat across the served models: {', '.join(repeated)}")
        if set(backends) != set(names):
            raise ModelLoadError(f"the models {names} and their backends {sorted(backends)} do not match")
        self._backends: Mapping[str, InferenceBackend] = MappingProxyType({name: backends[name] for name in names})
        self._swap = {entry.name: SwapModelInfo.of(entry) for entry in self._entries if entry.kind == "swap"}

    @property
    def entries(self) -> tuple[ModelEntry, ...]:
        """Every model's manifest entry, in order."""
        return self._entries

    @property
    def names(self) -> tuple[str, ...]:
        """Every model's name, in order."""
        return tuple(entry.name for entry in self._entries)

    @property
    def swap_names(self) -> tuple[str, ...]:
        """The swap models' names, in order."""
        return tuple(self._swap)

    @property
    def backends(self) -> Mapping[str, InferenceBackend]:
        """The backend of each model, by name (read-only)."""
        return self._backends

    def of_kind(self, kind: ModelKind) -> tuple[ModelEntry, ...]:
        """The entries of one kind, in order."""
        return tuple(entry for entry in self._entries if entry.kind == kind)

    def resolve(self, model: str) -> SwapModelInfo:
        """The swap model named `model`, or the first one with that direction; ConfigError lists the choices."""
        try:
            entry = resolve_entry(self._entries, model, kind="swap")
        except UnknownModelError as exc:
            raise ConfigError(f"option 'model': {exc}") from exc
        return self._swap[entry.name]

    def use(self, model: str) -> AbstractContextManager[SwapModelInfo]:
        """`resolve(model)` for a block (SwapModels): a snapshot's backends live as long as it, nothing to hold."""
        return nullcontext(self.resolve(model))

    def with_models(self, entries: Iterable[ModelEntry], backends: Mapping[str, InferenceBackend]) -> ModelCatalog:
        """A new snapshot: these models after this catalog's (which share their backends with it); this one is
        unchanged. ModelLoadError if a name is already served."""
        return ModelCatalog((*self._entries, *entries), {**self._backends, **backends})

    def without_models(self, names: Collection[str]) -> ModelCatalog:
        """A new snapshot without the models `names` (the rest share their backends with this one); this one is
        unchanged and its backends stay open. ConfigError names any of `names` not served."""
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise ConfigError(f"cannot remove models that are not served: {', '.join(unknown)}")
        return ModelCatalog([entry for entry in self._entries if entry.name not in names],
                            {name: backend for name, backend in self._backends.items() if name not in names})

    def close(self) -> None:
        """Close every backend (at shutdown: snapshots made by `with_models` share backends with this one)."""
        for backend in self._backends.values():
            backend.close()
