"""Signing a real MP4 and `swapstream verify`: valid and AI-generated, tampering caught, trust checked against a CA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from provenance.cli import verify_main
from provenance.errors import AssetError
from provenance.facts import ConsentRecord, ModelFacts, RecordingFacts
from provenance.keys import KeyFiles
from provenance.sign import sign_mp4
from provenance.signer import SigningConfig, SigningCredentials, load_signing_credentials
from swapstream.cli import main
from tests.fixtures.provenance import flip_video_byte

MODEL_SHA = "3f" * 32
CONSENT = {"statement": "We agree to our faces being used for this model.", "people": ["Ann Example", "Bo Example"],
           "time": "2026-01-02T03:04:05Z", "files": [{"name": "consent-form.pdf", "sha256": "a1" * 32}]}


@pytest.fixture(scope="module")
def credentials(signing_keys: KeyFiles) -> SigningCredentials:
    return load_signing_credentials(SigningConfig(signing_keys.chain, signing_keys.key))


@pytest.fixture(scope="module")
def signed_recording(tmp_path_factory: pytest.TempPathFactory, unsigned_recording: Path,
                     credentials: SigningCredentials) -> Path:
    facts = RecordingFacts("a camera stream", ModelFacts("swap_a2b", MODEL_SHA, ConsentRecord.from_json(CONSENT, "t")))
    return sign_mp4(unsigned_recording, tmp_path_factory.mktemp("signed") / "signed.mp4", credentials, facts)


def _verify_json(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = verify_main([*argv, "--json"], environ={})
    return code, json.loads(capsys.readouterr().out)


def test_signed_recording_verifies_as_ai_generated_with_model_hash_and_consent(
        signed_recording: Path, signing_keys: KeyFiles, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(signed_recording)]) == 0
    report = capsys.readouterr().out
    assert "VALID C2PA manifest" in report and "NOT VALID" not in report
    assert "AI-generated: yes" in report and "trainedAlgorithmicMedia" in report
    assert f"swap_a2b, sha256 {MODEL_SHA}" in report
    assert "Ann Example, Bo Example" in report
    assert "CN=swapstream signer" in report  # who signed it

    code, result = _verify_json(str(signed_recording), capsys=capsys)
    assert code == 0 and result["valid"] and result["state"] == "Valid"
    assert result["ai_generated"] is True
    assert "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia" in result["source_types"]
    assert result["model"]["name"] == "swap_a2b" and result["model"]["sha256"] == MODEL_SHA
    assert result["model"]["consent"] == CONSENT
    assert result["generator"].startswith("swapstream ")
    assert result["problems"] == []


def test_one_flipped_byte_of_video_fails_with_the_hash_mismatch(
        signed_recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tampered = tmp_path / "tampered.mp4"
    shutil.copyfile(signed_recording, tampered)
    flip_video_byte(tampered)
    assert main(["verify", str(tampered)]) == 1
    report = capsys.readouterr().out
    assert "NOT VALID" in report
    assert "assertion.bmffHash.mismatch" in report and "hash mismatch" in report


def test_trust_passes_with_the_signers_ca_and_fails_with_another(
        signed_recording: Path, signing_keys: KeyFiles, other_keys: KeyFiles,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _verify_json(str(signed_recording), "--trust", str(signing_keys.ca), capsys=capsys)
    assert code == 0 and result["state"] == "Trusted" and result["trust_anchors"] == str(signing_keys.ca)

    code, result = _verify_json(str(signed_recording), "--trust", str(other_keys.ca), capsys=capsys)
    assert code == 1 and not result["valid"]
    assert [p["code"] for p in result["problems"]] == ["signingCredential.untrusted"]
    assert str(other_keys.ca) in result["problems"][0]["explanation"]


def test_trust_anchors_come_from_the_environment_that_keys_init_prints(
        signed_recording: Path, other_keys: KeyFiles, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_main([str(signed_recording)], environ={"SWAPSTREAM_TRUST": str(other_keys.ca)}) == 1
    assert "signingCredential.untrusted" in capsys.readouterr().out


def test_a_file_without_credentials_is_not_valid(unsigned_recording: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(unsigned_recording)]) == 1
    assert "no C2PA manifest" in capsys.readouterr().out


def test_missing_and_unreadable_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 1
    assert "missing.mp4: no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video")
    assert main(["verify", str(junk)]) == 1
    assert f"{junk}: c2pa cannot read it" in capsys.readouterr().err


def test_signing_in_place_replaces_the_file_atomically(unsigned_recording: Path, tmp_path: Path,
                                                       credentials: SigningCredentials,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    recording = tmp_path / "in_place.mp4"
    shutil.copyfile(unsigned_recording, recording)
    sign_mp4(recording, recording, credentials, RecordingFacts("a camera stream", ModelFacts("m", None)))
    assert [p.name for p in tmp_path.iterdir()] == ["in_place.mp4"]
    code, result = _verify_json(str(recording), capsys=capsys)
    assert code == 0 and result["model"] == {"name": "m", "sha256": None}


def test_only_mp4_recordings_are_signed(tmp_path: Path, credentials: SigningCredentials) -> None:
    with pytest.raises(AssetError, match="only MP4"):
        sign_mp4(tmp_path / "x.avi", tmp_path / "y.avi", credentials, RecordingFacts("x", ModelFacts("m", None)))
    with pytest.raises(AssetError, match="no such file"):
        sign_mp4(tmp_path / "x.mp4", tmp_path / "y.mp4", credentials, RecordingFacts("x", ModelFacts("m", None)))
