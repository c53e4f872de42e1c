"""Errors of the evaluation package.

EvaluationError (SwapstreamError)
 +-- JudgeError      the identity judge (dlib + its weights) cannot be loaded or used
"""

from __future__ import annotations

from swapstream.errors import SwapstreamError


class EvaluationError(SwapstreamError):
    """A failure while evaluating a swap model; the message says what and where."""


class JudgeError(EvaluationError):
    """The identity judge is missing or cannot describe a face."""
