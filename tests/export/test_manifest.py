"""The one manifest type: what export wrote reads back equal, with or without a consent record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from swapstream.errors import ManifestError, UnknownModelError
from swapstream.manifest import Consent, ConsentFile, Manifest, read_manifest, resolve_entry, write_manifest


def test_export_wrote_exactly_what_the_shared_writer_writes(exported_models: Path) -> None:
    manifest = read_manifest(exported_models)
    assert manifest.names == ["swap_a2b", "swap_b2a", "digits"]
    text = (exported_models / "manifest.json").read_text(encoding="utf-8")
    assert text == json.dumps(manifest.to_json(), indent=2) + "\n"
    assert all("consent" not in model for model in json.loads(text)["models"])


def test_entries_round_trip_with_a_consent_record(exported_models: Path, tmp_path: Path) -> None:
    manifest = read_manifest(exported_models)
    consent = Consent(statement="Both people shown agreed to this use.", people=("Ada Example", "Bo Example"),
                      time="2026-11-30T10:00:00Z", files=(ConsentFile("a.webm", "ab" * 32),
                                                          ConsentFile("b.jpg", "cd" * 32)))
    entries = (dataclasses.replace(manifest.models[0], consent=consent), *manifest.models[1:])
    written = write_manifest(Manifest(tmp_path, entries, created=manifest.created))

    again = read_manifest(tmp_path)
    assert again.models == entries and again.created == manifest.created
    models = json.loads(written.read_text(encoding="utf-8"))["models"]
    assert models[0]["consent"] == {"statement": consent.statement, "people": ["Ada Example", "Bo Example"],
                                    "time": "2026-11-30T10:00:00Z",
                                    "files": [{"name": "a.webm", "sha256": "ab" * 32},
                                              {"name": "b.jpg", "sha256": "cd" * 32}]}
    assert "consent" not in models[1]


def test_a_bad_consent_record_names_the_file_and_model(exported_models: Path, tmp_path: Path) -> None:
    data = json.loads((exported_models / "manifest.json").read_text(encoding="utf-8"))
    data["models"][1]["consent"] = {"statement": "agreed", "people": "Ada Example", "time": "2026-11-30T10:00:00Z"}
    (tmp_path / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ManifestError, match="people") as info:
        read_manifest(tmp_path)
    assert str(tmp_path / "manifest.json") in str(info.value) and "'swap_b2a'" in str(info.value)


def test_one_resolver_by_name_then_direction(exported_models: Path) -> None:
    models = read_manifest(exported_models).models
    assert resolve_entry(models, "digits").name == "digits"
    assert resolve_entry(models, "b2a").name == "swap_b2a"
    assert resolve_entry(models, "swap_a2b", kind="swap").name == "swap_a2b"
    with pytest.raises(UnknownModelError) as info:
        resolve_entry(models, "digits", kind="swap")
    assert str(info.value) == "no swap model 'digits'; choices: swap_a2b, swap_b2a, a2b, b2a"
