"""Errors of the export package.

ExportError (SwapstreamError)
 +-- ParityError            ONNX Runtime output differs from PyTorch beyond tolerance
 +-- TensorRTUnavailable    --tensorrt asked for where the tensorrt package does not import
"""

from __future__ import annotations

from swapstream.errors import SwapstreamError


class ExportError(SwapstreamError):
    """Exporting a training run failed."""


class ParityError(ExportError):
    """An exported graph does not reproduce the PyTorch model within tolerance."""


class TensorRTUnavailable(ExportError):
    """TensorRT was required but cannot be used here."""
