"""A signing certificate or key that cannot work is a clear error at start, naming the file and what is wrong.

Each bad certificate below is real (made with `cryptography`); each test also shows that c2pa itself refuses to
sign with it, so the early check rejects nothing c2pa would accept.
"""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provenance.errors import CertificateError
from provenance.keys import KeyFiles
from provenance.native import SignerKeys, c2pa_error_type, sign_stream
from provenance.signer import SigningConfig, load_signing_credentials, signing_config_from_flags

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(digital_signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature, False, False, False, False, cert_sign, cert_sign, False, False)


def _certificate(key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey, subject: str, issuer: str,
                 *, ca: bool = False, digital_signature: bool = True, eku: bool = True,
                 aki: bool = True) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(hours=1)).not_valid_after(NOW + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(_usage(digital_signature, cert_sign=ca), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    if aki:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, certificates: list[x509.Certificate], key: ec.EllipticCurvePrivateKey) -> SigningConfig:
    chain, key_file = folder / "chain.pem", folder / "signer.key"
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return SigningConfig(chain, key_file)


def _bad_chain(variant: str) -> tuple[list[x509.Certificate], ec.EllipticCurvePrivateKey]:
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(ca_key, ca_key, "CA", "CA", ca=True, eku=False, aki=False)
    if variant == "self-signed":
        return [_certificate(key, key, "me", "me", aki=False)], key
    if variant == "ca-first":
        return [ca], ca_key
    options = {"no-eku": {"eku": False}, "no-digital-signature": {"digital_signature": False},
               "no-aki": {"aki": False}}[variant]
    return [_certificate(key, ca_key, "signer", "CA", **options), ca], key


@pytest.mark.parametrize("variant, message", [
    ("self-signed", r"self-signed.*a CA must issue it.*swapstream keys init"),
    ("no-eku", r"no extended key usage"),
    ("no-digital-signature", r"lacks digitalSignature"),
    ("no-aki", r"no authority key identifier"),
    ("ca-first", r"first certificate \(CN=CA\) is a CA certificate"),
])
def test_certificates_c2pa_rejects_are_named_with_the_reason(tmp_path: Path, variant: str, message: str) -> None:
    certificates, key = _bad_chain(variant)
    config = _write(tmp_path, certificates, key)
    with pytest.raises(CertificateError, match=message) as info:
        load_signing_credentials(config)
    assert str(config.cert) in str(info.value)

    # c2pa agrees: it will not sign with this chain either (its own message only says "invalid").
    keys = SignerKeys("es256", config.cert.read_bytes(), config.key.read_bytes(), None)
    with pytest.raises(c2pa_error_type()):
        sign_stream(keys, {"title": "x.png"}, "image/png", io.BytesIO(_png()), io.BytesIO())


def test_missing_files_are_named(tmp_path: Path, signing_keys: KeyFiles) -> None:
    with pytest.raises(CertificateError, match=rf"--sign-cert {tmp_path / 'nope.pem'}: no such file"):
        load_signing_credentials(SigningConfig(tmp_path / "nope.pem", signing_keys.key))
    with pytest.raises(CertificateError, match=rf"--sign-key {tmp_path / 'nope.key'}: no such file"):
        load_signing_credentials(SigningConfig(signing_keys.chain, tmp_path / "nope.key"))


def test_a_key_that_is_not_the_certificates_is_named(signing_keys: KeyFiles, other_keys: KeyFiles) -> None:
    with pytest.raises(CertificateError, match=rf"--sign-key {other_keys.key} does not belong to the certificate"):
        load_signing_credentials(SigningConfig(signing_keys.chain, other_keys.key))


def test_files_that_are_not_pem_are_named(tmp_path: Path, signing_keys: KeyFiles) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(CertificateError, match=rf"--sign-cert {garbage}: not a PEM certificate"):
        load_signing_credentials(SigningConfig(garbage, signing_keys.key))
    with pytest.raises(CertificateError, match=rf"--sign-key {garbage}: not a PEM private key"):
        load_signing_credentials(SigningConfig(signing_keys.chain, garbage))
    # Swapped flags: a certificate where the key belongs.
    with pytest.raises(CertificateError, match="not a PEM private key"):
        load_signing_credentials(SigningConfig(signing_keys.chain, signing_keys.chain))


def test_flags_fall_back_to_the_environment_and_need_both_files(signing_keys: KeyFiles) -> None:
    env = {"SWAPSTREAM_SIGN_CERT": str(signing_keys.chain), "SWAPSTREAM_SIGN_KEY": str(signing_keys.key)}
    assert signing_config_from_flags(None, None, None, env) == SigningConfig(signing_keys.chain, signing_keys.key)
    assert signing_config_from_flags(None, None, None, {}) is None
    with pytest.raises(CertificateError, match="without --sign-key"):
        signing_config_from_flags(signing_keys.chain, None, None, {})
    with pytest.raises(CertificateError, match="without --sign-cert"):
        signing_config_from_flags(None, None, None, {"SWAPSTREAM_SIGN_KEY": str(signing_keys.key)})
    with pytest.raises(CertificateError, match="--sign-tsa-url"):
        signing_config_from_flags(None, None, "ftp://tsa", env)


def _png() -> bytes:
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    assert ok
    return data.tobytes()
