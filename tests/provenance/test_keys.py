"""`swapstream keys init DIR`: a test CA and a C2PA signer c2pa accepts, written safely, never overwritten by accident."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from provenance.certificates import C2PA_CLAIM_SIGNING
from provenance.keys import KeyFiles
from provenance.signer import SigningConfig, load_signing_credentials
from swapstream.cli import main
from tests.fixtures.provenance import keys_init


def test_keys_init_writes_a_ca_a_signer_it_issued_and_a_private_key(signing_keys: KeyFiles) -> None:
    assert stat.S_IMODE(signing_keys.key.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(signing_keys.ca.read_bytes())
    signer, chain_ca = x509.load_pem_x509_certificates(signing_keys.chain.read_bytes())
    assert chain_ca == ca
    signer.verify_directly_issued_by(ca)  # raises unless the CA signed it
    assert signer.issuer != signer.subject
    assert ca.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca
    usage = signer.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    assert usage.critical and usage.value.digital_signature
    purposes = list(signer.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value)
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in purposes and C2PA_CLAIM_SIGNING in purposes
    signer.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    signer.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER)


def test_c2pa_signs_with_what_keys_init_makes(signing_keys: KeyFiles) -> None:
    credentials = load_signing_credentials(SigningConfig(signing_keys.chain, signing_keys.key))
    assert credentials.algorithm == "es256"
    assert "swapstream signer" in credentials.subject and "test CA" in credentials.issuer


def test_keys_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = keys_init(tmp_path / "keys")
    old_key = first.key.read_bytes()
    assert main(["keys", "init", str(tmp_path / "keys")]) == 1
    error = capsys.readouterr().err
    assert "already exist" in error and "--force" in error and str(first.key) in error
    assert first.key.read_bytes() == old_key

    assert main(["keys", "init", str(tmp_path / "keys"), "--force"]) == 0
    assert first.key.read_bytes() != old_key
    assert stat.S_IMODE(first.key.stat().st_mode) == 0o600
    # No temporary files are left beside the keys.
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["ca.pem", "chain.pem", "signer.key"]


def test_keys_init_rejects_a_file_as_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("not a folder")
    assert main(["keys", "init", str(target)]) == 1
    assert "is a file" in capsys.readouterr().err
