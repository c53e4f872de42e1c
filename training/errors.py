"""Errors of the training package.

TrainingError (SwapstreamError)
 +-- ExtractError      face-set extraction failed (bad source, nothing usable)
 +-- DatasetError      a face set or digits file that is missing, empty or of the wrong size (names the path)
 +-- CheckpointError   a checkpoint that is missing, corrupt or of another model (names the file)
"""

from __future__ import annotations

from swapstream.errors import SwapstreamError


class TrainingError(SwapstreamError):
    """A failure while preparing data for, or running, training."""


class ExtractError(TrainingError):
    """Face-set extraction failed."""


class DatasetError(TrainingError):
    """A training data set cannot be used."""


class CheckpointError(TrainingError):
    """A checkpoint cannot be read or does not fit."""
