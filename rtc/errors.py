"""Errors of the receive path.

RtcError (SwapstreamError)
 +-- JitterBufferModeError   a jitter-buffer mode other than marker or stock (the message names --jitter-buffer)
"""

from __future__ import annotations

from swapstream.errors import SwapstreamError


class RtcError(SwapstreamError):
    """A failure in the receive path both ends share."""


class JitterBufferModeError(RtcError):
    """An unknown jitter-buffer mode was asked for."""
