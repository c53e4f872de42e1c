"""The root of every error swapstream raises on purpose, and the manifest's own errors.

SwapstreamError
 +-- ManifestError                   manifest.json or a model file it names: missing, invalid, mismatched
 |    +-- UnknownModelError          no model by that name or direction (lists the choices)
 |    +-- stream_server.errors.ModelLoadError   (also a ServerError) a backend cannot open a model file
 +-- faces.errors.FaceError          detection / alignment / synthetic data
 |    +-- faces.errors.InputError    a path that is missing, unreadable or not media
 +-- training.errors.TrainingError   data sets, checkpoints, resume
 +-- export.errors.ExportError       ONNX / TensorRT conversion and parity
 +-- rtc.errors.RtcError             the receive path both ends share (jitter-buffer mode)
 +-- stream_server.errors.ServerError  ConfigError, ModelLoadError, SignalingError, ...
 +-- fleet.errors.FleetError         `swapstream triton`: ports, Triton start-up and readiness

Library code raises these; only the CLI (swapstream.cli) turns them into exit codes.
"""

from __future__ import annotations


class SwapstreamError(Exception):
    """Base class: a failure with a message meant for the user."""


class ManifestError(SwapstreamError):
    """`manifest.json`, or a model file it names, is missing, invalid or does not match it (names the file)."""


class UnknownModelError(ManifestError):
    """No model answers to a name or direction; the message lists the choices."""
