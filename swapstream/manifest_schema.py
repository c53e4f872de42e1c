"""The pieces of `MODELS/manifest.json` that its writer (export/) and its reader (stream_server/) share.

Standard library only, so the server can import it without torch or onnx. The full schema is in
docs/CONTRACTS.md; export builds entries, the server parses and validates them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape (a string for the dynamic batch axis) and dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @property
    def tail(self) -> tuple[int | str, ...]:
        """The shape past the batch axis."""
        return self.shape[1:]

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON form."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class EngineInfo:
    """A serialized TensorRT engine built from an entry's ONNX file (GPU-specific)."""

    file: str
    sha256: str
    max_batch: int


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
