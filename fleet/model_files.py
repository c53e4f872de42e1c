"""The one place fleet/ reads `MODELS/manifest.json` and opens model files.

The manifest loading lives in the stream server today (`stream_server.inference`) and is moving to
`swapstream/manifest.py`; when it moves, only these imports change. Loading a model checks its file against the
manifest (exists, sha256, input and output names and shapes) and names the file on any mismatch.
"""

from __future__ import annotations

from stream_server.errors import ModelLoadError
from stream_server.inference import InferenceBackend, Manifest, ModelEntry, load_backend, load_manifest

__all__ = ["InferenceBackend", "Manifest", "ModelEntry", "ModelLoadError", "load_backend", "load_manifest"]
