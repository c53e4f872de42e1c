"""`swapstream keys init DIR`: a local test CA and a signing certificate it issued, for people without one.

C2PA rejects a self-signed signer, so two certificates are made: a CA (its key is used once and then
discarded, so nobody can issue more signers under it) and an end-entity signer with the profile C2PA requires
(digitalSignature key usage, the emailProtection and c2pa-kp-claimSigning extended key usages, subject and
authority key identifiers). Keys are EC P-256 (ES256), which every C2PA validator supports. Recordings signed
with them verify as valid everywhere, and as trusted only where this CA is given as a trust anchor
(`swapstream verify --trust DIR/ca.pem`): it is on no public trust list.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provenance.certificates import C2PA_CLAIM_SIGNING
from provenance.errors import KeysExistError
from provenance.signer import CERT_ENVIRONMENT_VARIABLE, KEY_ENVIRONMENT_VARIABLE
from provenance.verify import TRUST_ENVIRONMENT_VARIABLE
from swapstream.atomic import atomic_write_bytes

CA_FILE = "ca.pem"
CHAIN_FILE = "chain.pem"
KEY_FILE = "signer.key"
PRIVATE_MODE = 0o600
ORGANIZATION = "swapstream local test"
# Backdated a little so a signer made now is valid on a machine whose clock is slightly behind.
CLOCK_SKEW = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class LocalCredentials:
    """A CA certificate, the signer certificate it issued and the signer's private key (in memory)."""

    ca: x509.Certificate
    signer: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class KeyFiles:
    """Where `keys init` wrote the credentials."""

    ca: Path
    chain: Path
    key: Path

    def environment(self) -> dict[str, str]:
        """The environment that makes `swapstream client` and `serve --record` sign, and `verify` check trust."""
        return {CERT_ENVIRONMENT_VARIABLE: str(self.chain), KEY_ENVIRONMENT_VARIABLE: str(self.key),
                TRUST_ENVIRONMENT_VARIABLE: str(self.ca)}


def make_test_credentials(signer_name: str, days: int, now: datetime.datetime | None = None) -> LocalCredentials:
    """A fresh P-256 test CA and a C2PA claim-signing certificate it issued to `signer_name`, valid `days` days."""
    start = (now or datetime.datetime.now(datetime.timezone.utc)) - CLOCK_SKEW
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{signer_name} test CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days) + CLOCK_SKEW)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    signer = (
        x509.CertificateBuilder()
        .subject_name(_name(signer_name))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, C2PA_CLAIM_SIGNING]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return LocalCredentials(ca, signer, key)


def write_test_credentials(directory: Path, credentials: LocalCredentials, force: bool = False) -> KeyFiles:
    """Write ca.pem, chain.pem (signer then CA) and signer.key (mode 0600) into `directory`, each atomically.

    KeysExistError names the files already there unless `force`.
    """
    directory = directory.expanduser().resolve()
    files = KeyFiles(ca=directory / CA_FILE, chain=directory / CHAIN_FILE, key=directory / KEY_FILE)
    existing = [str(path) for path in (files.ca, files.chain, files.key) if path.exists()]
    if existing and not force:
        raise KeysExistError(f"{', '.join(existing)} already exist; pass --force to replace them "
                             "(recordings signed with the old key keep verifying against the old ca.pem)")
    ca_pem = credentials.ca.public_bytes(serialization.Encoding.PEM)
    key_pem = credentials.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
    # The key first: a crash part-way leaves no certificate that points at a key which is not there.
    atomic_write_bytes(files.key, key_pem, mode=PRIVATE_MODE)
    atomic_write_bytes(files.chain, credentials.signer.public_bytes(serialization.Encoding.PEM) + ca_pem)
    atomic_write_bytes(files.ca, ca_pem)
    return files


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)])


def _key_usage(digital_signature: bool = False, key_cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
                         crl_sign=key_cert_sign, encipher_only=False, decipher_only=False)
