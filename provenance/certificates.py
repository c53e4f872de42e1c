"""Reading a signing certificate chain and its key, and the certificate profile C2PA requires of a claim signer.

c2pa-python reports any profile problem as "the certificate is invalid"; these checks run first so the user is
told which file is wrong and why (C2PA Technical Specification, "Trust model" / "X.509 certificates").
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, ObjectIdentifier

from provenance.errors import CertificateError

SigningAlgorithm = Literal["es256", "es384", "es512", "ps256", "ed25519"]
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# The claim-signing EKU of C2PA 2.x; keys init puts it beside emailProtection, which older validators look for.
C2PA_CLAIM_SIGNING = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
# Extended key usages c2pa-rs accepts for a claim signer when no EKU list is configured.
ACCEPTED_EKUS: dict[ObjectIdentifier, str] = {
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ObjectIdentifier("1.3.6.1.5.5.7.3.36"): "documentSigning",
    C2PA_CLAIM_SIGNING: "c2pa-kp-claimSigning",
    ObjectIdentifier("1.3.6.1.4.1.311.76.59.1.9"): "Microsoft C2PA signing",
}
_EC_ALGORITHMS: dict[str, SigningAlgorithm] = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}


@dataclass(frozen=True)
class CertificateChain:
    """A signing certificate followed by the CAs that issued it, as read from one PEM file."""

    path: Path
    certificates: tuple[x509.Certificate, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    def pem(self) -> bytes:
        """The chain as PEM, leaf first: what c2pa-python embeds in the manifest."""
        return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in self.certificates)


def describe_name(name: x509.Name) -> str:
    """An X.509 name the way people read it, in the certificate's order: e.g. 'CN=swapstream signer, O=swapstream'."""
    return ", ".join(attribute.rfc4514_string() for attribute in name) or "(empty name)"


def load_certificates(path: Path, flag: str) -> CertificateChain:
    """Every certificate of a PEM file, leaf first; CertificateError names `flag` and the file."""
    data = _read(path, flag)
    try:
        certificates = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as exc:
        raise CertificateError(f"{flag} {path}: not a PEM certificate file ({exc})") from exc
    return CertificateChain(path, certificates)


def load_private_key(path: Path, flag: str) -> SigningKey:
    """An unencrypted PEM private key (PKCS#8 or traditional); CertificateError says what is wrong."""
    data = _read(path, flag)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise CertificateError(f"{flag} {path}: the key is encrypted; give an unencrypted PEM key "
                               "(protect it by file permissions or keep it in an HSM)") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{flag} {path}: not a PEM private key ({exc})") from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise CertificateError(f"{flag} {path}: a {type(key).__name__} cannot sign C2PA manifests; "
                               "use an EC P-256/P-384/P-521, RSA or Ed25519 key")
    return key


def signing_algorithm(key: SigningKey, path: Path, flag: str) -> SigningAlgorithm:
    """The C2PA signature algorithm for a key: ES256/384/512 by curve, PS256 for RSA (C2PA forbids PKCS#1 v1.5)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = _EC_ALGORITHMS.get(key.curve.name)
        if algorithm is None:
            raise CertificateError(f"{flag} {path}: EC curve {key.curve.name} is not one C2PA allows "
                                   "(P-256, P-384 or P-521)")
        return algorithm
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise CertificateError(f"{flag} {path}: a {key.key_size}-bit RSA key is too short; C2PA needs 2048+")
        return "ps256"
    return "ed25519"


def check_signing_chain(chain: CertificateChain, key: SigningKey, key_path: Path,
                        now: datetime.datetime | None = None) -> None:
    """CertificateError unless `chain` is one C2PA accepts for a claim signer that holds `key`.

    Checked: the key belongs to the leaf; the leaf is not a CA and not self-signed; it is inside its validity
    period; its key usage has digitalSignature; its extended key usage names a claim-signing purpose and not
    anyExtendedKeyUsage; it has an authority key identifier; each certificate is signed by the next one.
    """
    where = f"--sign-cert {chain.path}"
    if not chain.certificates:
        raise CertificateError(f"{where}: the file holds no certificate")
    leaf = chain.leaf
    if _public_bytes(leaf.public_key()) != _public_bytes(key.public_key()):
        raise CertificateError(f"--sign-key {key_path} does not belong to the certificate in {chain.path} "
                               f"(subject {describe_name(leaf.subject)}): the key and certificate differ")
    constraints = _extension(leaf, ExtensionOID.BASIC_CONSTRAINTS)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise CertificateError(f"{where}: the first certificate ({describe_name(leaf.subject)}) is a CA certificate; "
                               "put the signer's own certificate first (a CA may not sign C2PA claims)")
    if leaf.issuer == leaf.subject and _signed_by(leaf, leaf):
        raise CertificateError(
            f"{where}: the signing certificate ({describe_name(leaf.subject)}) is self-signed; C2PA rejects a "
            "self-signed signer: a CA must issue it. For a local test CA and signer run `swapstream keys init DIR`")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now < leaf.not_valid_before_utc:
        raise CertificateError(f"{where}: the certificate is not valid before "
                               f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    if now > leaf.not_valid_after_utc:
        raise CertificateError(f"{where}: the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d} UTC")
    _check_leaf_extensions(leaf, where)
    for index, (cert, issuer) in enumerate(zip(chain.certificates, chain.certificates[1:])):
        if not _signed_by(cert, issuer):
            raise CertificateError(
                f"{where}: certificate {index + 2} ({describe_name(issuer.subject)}) did not issue certificate "
                f"{index + 1} ({describe_name(cert.subject)}); list the signer first, then each CA that issued the "
                "one before")


def _check_leaf_extensions(leaf: x509.Certificate, where: str) -> None:
    usage = _extension(leaf, ExtensionOID.KEY_USAGE)
    if not isinstance(usage, x509.KeyUsage) or not usage.digital_signature:
        raise CertificateError(f"{where}: the certificate's key usage lacks digitalSignature, which C2PA requires")
    extended = _extension(leaf, ExtensionOID.EXTENDED_KEY_USAGE)
    if not isinstance(extended, x509.ExtendedKeyUsage) or not list(extended):
        raise CertificateError(f"{where}: the certificate has no extended key usage; C2PA requires one of "
                               f"{', '.join(ACCEPTED_EKUS.values())}")
    purposes = list(extended)
    if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in purposes:
        raise CertificateError(f"{where}: the certificate allows anyExtendedKeyUsage, which C2PA forbids")
    if not any(purpose in ACCEPTED_EKUS for purpose in purposes):
        names = ", ".join(purpose.dotted_string for purpose in purposes)
        raise CertificateError(f"{where}: the certificate's extended key usage ({names}) names no C2PA signing "
                               f"purpose; it needs one of {', '.join(ACCEPTED_EKUS.values())}")
    if _extension(leaf, ExtensionOID.AUTHORITY_KEY_IDENTIFIER) is None:
        raise CertificateError(f"{where}: the certificate has no authority key identifier, which C2PA requires")


def _extension(cert: x509.Certificate, oid: ObjectIdentifier) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` issued `cert`: its subject is `cert`'s issuer and its key made `cert`'s signature."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def _public_bytes(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _read(path: Path, flag: str) -> bytes:
    if not path.is_file():
        raise CertificateError(f"{flag} {path}: no such file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from exc

