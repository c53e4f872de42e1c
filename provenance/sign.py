"""Signing a finished recording: a C2PA manifest embedded in an MP4, written to a new file atomically.

`sign_mp4` takes paths and facts only, so every writer of recordings (`swapstream client --output`,
`swapstream serve --record DIR`) calls it the same way once its MP4 is closed. Source and destination may be the
same path: the signed file is written beside the destination and renamed over it, so a reader sees the unsigned
file or the signed one, never a torn one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from provenance.errors import AssetError, SigningError
from provenance.facts import RecordingFacts, manifest_definition
from provenance.native import c2pa_error_type, sign_stream
from provenance.signer import SigningCredentials
from swapstream.atomic import atomic_path

logger = logging.getLogger(__name__)

MIME_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime"}


def sign_mp4(source: Path, destination: Path, credentials: SigningCredentials, facts: RecordingFacts,
             title: str | None = None) -> Path:
    """Write `source` with a C2PA manifest stating `facts`, signed by `credentials`, to `destination`.

    The MP4 must be complete (its moov box written). `title` is the name the manifest gives the asset (default:
    the destination's file name; a caller signing a temporary file passes the final name). AssetError names a
    missing or unsupported source; SigningError names the file c2pa could not sign. Returns `destination`.
    """
    mime_type = MIME_TYPES.get(source.suffix.lower())
    if mime_type is None:
        raise AssetError(f"{source}: only MP4 / MOV recordings are signed here (got {source.suffix or 'no suffix'})")
    if not source.is_file():
        raise AssetError(f"{source}: no such file to sign")
    started = time.perf_counter()
    title = title or destination.name
    manifest = manifest_definition(facts, title=title)
    try:
        with atomic_path(destination) as signed, open(source, "rb") as reader, open(signed, "w+b") as writer:
            sign_stream(credentials.keys, manifest, mime_type, reader, writer)
    except c2pa_error_type() as exc:
        raise SigningError(f"cannot sign {source}: {exc}") from exc
    except OSError as exc:
        raise SigningError(f"cannot sign {source} into {destination}: {exc.strerror or exc}") from exc
    logger.info("signed %s (C2PA, %s, signer %s) in %.2f s", title, credentials.algorithm.upper(),
                credentials.subject, time.perf_counter() - started)
    return destination
