"""Errors of the provenance package.

ProvenanceError (SwapstreamError)
 +-- CertificateError     a certificate or key file (signing or --trust) that is missing, unreadable or that
 |                        C2PA would reject (names the file and what is wrong)
 +-- SigningError         signing a file failed (names the file)
 +-- AssetError           a file to sign or verify that is missing or not a media file C2PA reads
 +-- KeysExistError       `keys init` would overwrite existing keys (says --force)
 +-- C2paUnavailable      c2pa-python is not installed (says how to install it)
"""

from __future__ import annotations

from swapstream.errors import SwapstreamError


class ProvenanceError(SwapstreamError):
    """A failure while making keys, signing or verifying Content Credentials."""


class CertificateError(ProvenanceError):
    """A certificate or key file cannot be used."""


class SigningError(ProvenanceError):
    """A file could not be signed."""


class AssetError(ProvenanceError):
    """A file to sign or verify is missing or unreadable."""


class KeysExistError(ProvenanceError):
    """Key files are already there and --force was not given."""


class C2paUnavailable(ProvenanceError):
    """The c2pa-python package is not installed."""
