"""Errors of the Triton fleet package.

FleetError (SwapstreamError)
 +-- ConfigError        a `swapstream triton` flag with a bad value (names it)
 +-- TritonStartError   Triton cannot start or serve: a port in use, tritonserver exited, a model not ready in time

Manifest and model-file problems come as stream_server.errors.ModelLoadError, naming the file.
"""

from __future__ import annotations

from swapstream.errors import SwapstreamError


class FleetError(SwapstreamError):
    """A failure of the Triton fleet."""


class ConfigError(FleetError):
    """A flag has a bad value."""


class TritonStartError(FleetError):
    """Triton Inference Server could not be started, or stopped serving."""
