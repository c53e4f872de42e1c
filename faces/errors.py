"""Errors of the face-geometry package.

FaceError (SwapstreamError)
 +-- InputError      a path that is missing, unreadable, empty or not an image/video (the message names it)
 +-- NoFaceError     a frame where a face was required and none was found
"""

from __future__ import annotations

from swapstream.errors import SwapstreamError


class FaceError(SwapstreamError):
    """A failure in detection, alignment or face data."""


class InputError(FaceError):
    """A media path that cannot be used; the message names the path."""


class NoFaceError(FaceError):
    """A face was required and none was found."""
