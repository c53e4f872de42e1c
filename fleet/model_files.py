"""The one place fleet/ reads `MODELS/manifest.json` and opens model files.

Triton runs the models with the stream server's own loaders (stream_server.backends), so a model file is checked
the same way on both sides: inside the models folder, its sha256, input and output names and shapes; any
mismatch names the file.
"""

from __future__ import annotations

from stream_server.errors import ModelLoadError
from stream_server.backends import InferenceBackend, load_backend, load_manifest
from swapstream.manifest import Manifest, ModelEntry

__all__ = ["InferenceBackend", "Manifest", "ModelEntry", "ModelLoadError", "load_backend", "load_manifest"]
