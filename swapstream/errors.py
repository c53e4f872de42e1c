"""The root of every error swapstream raises on purpose.

SwapstreamError
 +-- faces.errors.FaceError          detection / alignment / synthetic data
 |    +-- faces.errors.InputError    a path that is missing, unreadable or not media
 +-- training.errors.TrainingError   data sets, checkpoints, resume
 +-- export.errors.ExportError       ONNX / TensorRT conversion and parity
 +-- stream_server.errors.ModelLoadError, SignalingError, ...
 +-- fleet.errors.FleetError         `swapstream triton`: ports, Triton start-up and readiness

Library code raises these; only the CLI (swapstream.cli) turns them into exit codes.
"""

from __future__ import annotations


class SwapstreamError(Exception):
    """Base class: a failure with a message meant for the user."""
