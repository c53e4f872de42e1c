"""The swap models the server can run, resolved by manifest name or by direction ("a2b" / "b2a")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stream_server.errors import ConfigError


@dataclass(frozen=True)
class SwapModelInfo:
    """A swap model as the pipeline needs it: its manifest name, direction, crop size and output order."""

    name: str
    direction: str
    face_size: int
    rgb_index: int
    mask_index: int | None


class ModelCatalog:
    """The swap models of a manifest, resolved by manifest name or by direction ("a2b" / "b2a")."""

    def __init__(self, models: Mapping[str, SwapModelInfo]) -> None:
        self._models = dict(models)

    @classmethod
    def from_entries(cls, entries: list[Any]) -> ModelCatalog:
        models: dict[str, SwapModelInfo] = {}
        for entry in entries:
            if _field(entry, "kind") != "swap":
                continue
            outputs = [_field(o, "name") for o in _field(entry, "outputs")]
            rgb_index = outputs.index("rgb") if "rgb" in outputs else 0
            mask_index = outputs.index("mask") if "mask" in outputs else None
            name = _field(entry, "name")
            models[name] = SwapModelInfo(name, _field(entry, "direction"), int(_field(entry, "face_size")),
                                         rgb_index, mask_index)
        return cls(models)

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def resolve(self, model: str) -> SwapModelInfo:
        """The model named `model`, or the first model with that direction; ConfigError lists the choices."""
        if model in self._models:
            return self._models[model]
        for info in self._models.values():
            if info.direction == model:
                return info
        choices = ", ".join(sorted(set(self._models) | {m.direction for m in self._models.values()})) or "none loaded"
        raise ConfigError(f"option 'model': no swap model {model!r}; choices: {choices}")


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)
