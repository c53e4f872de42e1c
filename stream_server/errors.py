"""Errors of the stream server.

ServerError (SwapstreamError)
 +-- ConfigError            a flag or SWAPSTREAM_* variable with a bad value (names it)
 +-- ModelLoadError         a model file missing, corrupt or not what the manifest says (names the file);
 |    |                     also a swapstream.errors.ManifestError, like the manifest reader's own errors
 |    +-- TritonModelError  Triton lacks a manifest model or serves a different one (the start-up check)
 +-- RemoteInferenceError   the inference service (Triton) failed a request: the frame goes out unswapped, or
 |    |                     through --inference-fallback local; the next frame tries again
 |    +-- TritonUnavailable     Triton did not answer in time: down, unreachable or overloaded
 |    +-- TritonInferenceError  Triton answered with an error (a model not loaded yet, a bad input)
 +-- SignalingError         a malformed offer / WHIP / WHEP request (becomes HTTP 400)
 |    +-- AuthError         a missing or wrong bearer token (HTTP 401)
 +-- SessionLimitError      no room for another session or viewer (HTTP 503)
 +-- UnknownSessionError    no live session or viewer with that id (HTTP 404)
 +-- FrameTooLargeError     an incoming frame over --max-pixels (not processed; the peer is told)
"""

from __future__ import annotations

from swapstream.errors import ManifestError, SwapstreamError


class ServerError(SwapstreamError):
    """A failure in the stream server."""


class ConfigError(ServerError):
    """A configuration value is invalid."""


class ModelLoadError(ServerError, ManifestError):
    """A model cannot be loaded; raised at load time, never at the first frame."""


class TritonModelError(ModelLoadError):
    """Triton lacks a manifest model, or serves one that differs from the manifest (raised at start)."""


class RemoteInferenceError(ServerError):
    """The inference service failed one request; frames go on (unswapped, or through the local fallback)."""


class TritonUnavailable(RemoteInferenceError):
    """Triton did not answer in time: down, unreachable or overloaded."""


class TritonInferenceError(RemoteInferenceError):
    """Triton answered a request with an error (a model not loaded, a bad input, a model that failed at run time)."""


class SignalingError(ServerError):
    """A signaling request is malformed."""


class AuthError(SignalingError):
    """Missing or wrong bearer token (HTTP 401)."""


class SessionLimitError(ServerError):
    """No room for another session or viewer (HTTP 503)."""


class UnknownSessionError(ServerError):
    """No live session (or viewer) with that id (HTTP 404)."""


class FrameTooLargeError(ServerError):
    """An incoming frame has more pixels than --max-pixels; it is not processed."""
