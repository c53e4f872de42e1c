"""Errors of the Studio (a branch of the server's tree).

StudioError (stream_server.errors.ServerError)
 +-- StudioUnavailable  --studio cannot start: the training extra is missing in the child interpreter, or DIR is unusable
 +-- UploadError        an upload or job request that cannot be used (HTTP 400; the message says why)
 |    +-- UploadTooLarge   over --studio-max-mb (HTTP 413)
 +-- DiskFullError      no room left on the studio folder's disk (HTTP 507); nothing partial is kept
 +-- JobNotFound        no job with that id (HTTP 404)
 +-- JobConflict        the job name is taken by another job (HTTP 409)
 +-- StepFailed         a job's child process failed (the job becomes `failed`; never reaches a client as is)
"""

from __future__ import annotations

from stream_server.errors import ServerError


class StudioError(ServerError):
    """A failure in the Studio."""

    status = 500


class StudioUnavailable(StudioError):
    """The Studio cannot run here."""


class UploadError(StudioError):
    """A bad upload or job request."""

    status = 400


class UploadTooLarge(UploadError):
    """An upload over the size limit."""

    status = 413


class DiskFullError(StudioError):
    """The disk holding the studio folder is full (or below its reserve)."""

    status = 507


class JobNotFound(StudioError):
    """No job with that id."""

    status = 404


class JobConflict(StudioError):
    """A job with that name exists already."""

    status = 409


class StepFailed(StudioError):
    """A job's step (a child process) failed; `log_tail` holds the end of its output."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail
