"""Who signs: the signing configuration (flags or environment) and the credentials it loads, checked at start.

A command that records (`swapstream client`, `swapstream serve --record`) builds a `SigningConfig` once
from its flags with `signing_config_from_flags`, then calls `load_signing_credentials` before it records
anything: a missing file, a key that is not the certificate's, or a certificate C2PA would reject fails there,
naming the file, instead of after a recording has been made. The check ends with a real signature of a tiny
in-memory image, so whatever c2pa itself would refuse (or an unreachable timestamp authority) shows up too.
"""

from __future__ import annotations

import argparse
import io
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization

from provenance.certificates import (
    SigningAlgorithm,
    check_signing_chain,
    describe_name,
    load_certificates,
    load_private_key,
    signing_algorithm,
)
from provenance.errors import CertificateError
from provenance.facts import DIGITAL_CREATION, RecordingFacts, manifest_definition
from provenance.native import SignerKeys, c2pa_error_type, sign_stream

CERT_ENVIRONMENT_VARIABLE = "SWAPSTREAM_SIGN_CERT"
KEY_ENVIRONMENT_VARIABLE = "SWAPSTREAM_SIGN_KEY"
TSA_ENVIRONMENT_VARIABLE = "SWAPSTREAM_SIGN_TSA_URL"


@dataclass(frozen=True)
class SigningConfig:
    """Where the signing certificate chain and key are, and an optional RFC 3161 timestamp authority.

    `cert` is a PEM file holding the signer's certificate first, then the CAs that issued it; `key` is the
    signer's unencrypted PEM private key. Without `tsa_url` (the default: this machine may have no internet)
    a signature carries no trusted time and is judged against the certificate's validity at verification.
    """

    cert: Path
    key: Path
    tsa_url: str | None = None

    def __post_init__(self) -> None:
        if self.tsa_url is not None:
            parts = urlsplit(self.tsa_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise CertificateError(f"--sign-tsa-url must be an http(s) URL, got {self.tsa_url!r}")


@dataclass(frozen=True)
class SigningCredentials:
    """A checked certificate chain and key, ready to sign: what `sign_mp4` takes.

    Made only by `load_signing_credentials`; holds the PEM bytes (read once), so a recording made later does
    not depend on the files staying in place.
    """

    config: SigningConfig
    algorithm: SigningAlgorithm
    chain_pem: bytes
    key_pem: bytes
    subject: str
    issuer: str

    @property
    def keys(self) -> SignerKeys:
        return SignerKeys(self.algorithm, self.chain_pem, self.key_pem, self.config.tsa_url)


def add_signing_flags(parser: argparse.ArgumentParser) -> None:
    """--sign-cert, --sign-key and --sign-tsa-url, for every command that writes recordings."""
    group = parser.add_argument_group("C2PA signing (docs/provenance.md)")
    group.add_argument("--sign-cert", type=Path,
                       help=f"PEM certificate chain, signer first (default: ${CERT_ENVIRONMENT_VARIABLE}); "
                            "`swapstream keys init DIR` makes a local test one")
    group.add_argument("--sign-key", type=Path,
                       help=f"the signer's PEM private key (default: ${KEY_ENVIRONMENT_VARIABLE})")
    group.add_argument("--sign-tsa-url",
                       help=f"RFC 3161 timestamp authority URL (default: ${TSA_ENVIRONMENT_VARIABLE}, else none)")


def signing_config_from_flags(cert: Path | None, key: Path | None, tsa_url: str | None,
                              environ: Mapping[str, str]) -> SigningConfig | None:
    """The signing configuration from flags, falling back to the environment; None when neither names one."""
    cert = cert or path_from_environment(environ, CERT_ENVIRONMENT_VARIABLE)
    key = key or path_from_environment(environ, KEY_ENVIRONMENT_VARIABLE)
    tsa_url = tsa_url or environ.get(TSA_ENVIRONMENT_VARIABLE) or None
    if cert is None and key is None:
        return None
    if cert is None:
        raise CertificateError(f"--sign-key {key} was given without --sign-cert (or ${CERT_ENVIRONMENT_VARIABLE}): "
                               "signing needs the certificate chain too")
    if key is None:
        raise CertificateError(f"--sign-cert {cert} was given without --sign-key (or ${KEY_ENVIRONMENT_VARIABLE}): "
                               "signing needs the private key too")
    return SigningConfig(cert=cert, key=key, tsa_url=tsa_url)


def load_signing_credentials(config: SigningConfig) -> SigningCredentials:
    """Read and check the chain and key, then sign a tiny image with them; CertificateError names the file."""
    chain = load_certificates(config.cert, "--sign-cert")
    key = load_private_key(config.key, "--sign-key")
    check_signing_chain(chain, key, config.key)
    credentials = SigningCredentials(
        config=config,
        algorithm=signing_algorithm(key, config.key, "--sign-key"),
        chain_pem=chain.pem(),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
        subject=describe_name(chain.leaf.subject),
        issuer=describe_name(chain.leaf.issuer),
    )
    _test_sign(credentials)
    return credentials


def _test_sign(credentials: SigningCredentials) -> None:
    facts = RecordingFacts("a signing check", model=None, source_type=DIGITAL_CREATION)
    manifest = manifest_definition(facts, title="check.png")
    try:
        sign_stream(credentials.keys, manifest, "image/png", io.BytesIO(_tiny_png()), io.BytesIO())
    except c2pa_error_type() as exc:
        config = credentials.config
        tsa = f" or the timestamp authority {config.tsa_url} is unreachable" if config.tsa_url else ""
        raise CertificateError(f"--sign-cert {config.cert} / --sign-key {config.key}: c2pa cannot sign with "
                               f"them{tsa}: {exc}") from exc


def _tiny_png() -> bytes:
    """A valid 1x1 grey PNG, built by hand so the check needs no image library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
            + chunk(b"IEND", b""))


def path_from_environment(environ: Mapping[str, str], name: str) -> Path | None:
    """The path an environment variable names; None when it is unset or blank."""
    value = environ.get(name, "").strip()
    return Path(value) if value else None
