"""Errors of the clients.

ClientError (SwapstreamError)
 +-- ClientConfigError   a flag with a bad value (names the flag)
 +-- ConnectionFailed    the server is unreachable, refused the offer, or the peer connection failed
 +-- MediaError          an input video that cannot be read or an output that cannot be written (names the file)
 +-- FrameCodeError      a frame too small to carry the frame-number code
 +-- VirtualCameraError  pyvirtualcam missing or no v4l2loopback device (says how to fix it)
"""

from __future__ import annotations

from swapstream.errors import SwapstreamError


class ClientError(SwapstreamError):
    """A failure in a swapstream client."""


class ClientConfigError(ClientError):
    """A command-line value is invalid."""


class ConnectionFailed(ClientError):
    """The server could not be reached or the WebRTC session could not be set up."""


class MediaError(ClientError):
    """An input or output media file is unusable."""


class FrameCodeError(ClientError):
    """A frame cannot carry the frame-number code."""


class VirtualCameraError(ClientError):
    """The virtual camera cannot be opened."""
