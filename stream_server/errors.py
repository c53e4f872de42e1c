"""Errors of the stream server.

ServerError (SwapstreamError)
 +-- ConfigError       a flag or SWAPSTREAM_* variable with a bad value (names it)
 +-- ModelLoadError    a model file missing, corrupt or not what the manifest says (names the file);
 |                     also a swapstream.errors.ManifestError, like the manifest reader's own errors
 +-- SignalingError    a malformed offer / WHIP / WHEP request (becomes HTTP 400)
 |    +-- AuthError     a missing or wrong bearer token (HTTP 401)
 +-- SessionLimitError no room for another session or viewer (HTTP 503)
 +-- UnknownSessionError no live session or viewer with that id (HTTP 404)
 +-- FrameTooLargeError an incoming frame over --max-pixels (not processed; the peer is told)
"""

from __future__ import annotations

from swapstream.errors import ManifestError, SwapstreamError


class ServerError(SwapstreamError):
    """A failure in the stream server."""


class ConfigError(ServerError):
    """A configuration value is invalid."""


class ModelLoadError(ServerError, ManifestError):
    """A model cannot be loaded; raised at load time, never at the first frame."""


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
