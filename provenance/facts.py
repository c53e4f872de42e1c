"""What a recording asserts, and the C2PA manifest definition made of it.

A swapped recording says, in the standard `c2pa.actions` assertion:
 - `c2pa.created` by swapstream (software agent + version) from its input, with the digital source type
   `compositeWithTrainedAlgorithmicMedia`: the file is camera (or file) frames composited with a model's output;
 - `c2pa.edited` with the digital source type `trainedAlgorithmicMedia`: the faces were replaced by a trained
   model (named in the description).
and, in the custom assertion `org.swapstream.model`, the model's manifest name and the sha256 of its file, plus
the consent record of the people whose faces the model was trained on where the model's manifest entry has one.
Without a model (an echo server, or swapping turned off) only `c2pa.created` is asserted, with the input's own
digital source type, which the caller must know (C2PA requires one on `c2pa.created`; a file of unknown origin
has none, so such recordings are not signed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from provenance.errors import ProvenanceError
from swapstream import __version__

IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED_ALGORITHMIC_MEDIA = IPTC_SOURCE_TYPES + "trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = IPTC_SOURCE_TYPES + "compositeWithTrainedAlgorithmicMedia"
DIGITAL_CAPTURE = IPTC_SOURCE_TYPES + "digitalCapture"
DIGITAL_CREATION = IPTC_SOURCE_TYPES + "digitalCreation"
# The IPTC source types that mean "made, wholly or partly, by a generative or trained model".
AI_SOURCE_TYPES = frozenset({
    TRAINED_ALGORITHMIC_MEDIA,
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    IPTC_SOURCE_TYPES + "algorithmicMedia",
    IPTC_SOURCE_TYPES + "compositeSynthetic",
})
MODEL_ASSERTION = "org.swapstream.model"
SOFTWARE_NAME = "swapstream"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ConsentFile:
    """A file of a consent record (a signed form, a recording of the people agreeing) and its sha256."""

    name: str
    sha256: str


@dataclass(frozen=True)
class ConsentRecord:
    """The consent of the people a model was trained on, as a model's manifest entry records it (`consent`)."""

    statement: str
    people: tuple[str, ...]
    time: str
    files: tuple[ConsentFile, ...] = ()

    @classmethod
    def from_json(cls, data: Any, where: str) -> ConsentRecord:
        """A consent object {statement, people, time, files: [{name, sha256}]}; ProvenanceError names `where`."""
        if not isinstance(data, dict):
            raise ProvenanceError(f"{where}: 'consent' must be an object, got {type(data).__name__}")
        statement, time, people = data.get("statement"), data.get("time"), data.get("people")
        if not isinstance(statement, str) or not statement.strip():
            raise ProvenanceError(f"{where}: consent.statement must be a non-empty string")
        if not isinstance(time, str) or not time.strip():
            raise ProvenanceError(f"{where}: consent.time must be a time string (ISO 8601)")
        if not isinstance(people, list) or not people or not all(isinstance(p, str) and p.strip() for p in people):
            raise ProvenanceError(f"{where}: consent.people must be a non-empty list of names")
        files = data.get("files", [])
        if not isinstance(files, list):
            raise ProvenanceError(f"{where}: consent.files must be a list of {{name, sha256}}")
        return cls(statement, tuple(people), time, tuple(_consent_file(item, where) for item in files))

    def to_json(self) -> dict[str, Any]:
        return {"statement": self.statement, "people": list(self.people), "time": self.time,
                "files": [{"name": f.name, "sha256": f.sha256} for f in self.files]}


@dataclass(frozen=True)
class ModelFacts:
    """The swap model that made a recording: its manifest name, its file's sha256 and its consent record."""

    name: str
    sha256: str | None
    consent: ConsentRecord | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ProvenanceError(f"model {self.name!r}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    @classmethod
    def from_json(cls, data: Any, where: str) -> ModelFacts:
        """From a manifest entry, the server's model summary or an `org.swapstream.model` assertion."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ProvenanceError(f"{where}: a model needs a 'name'")
        sha256 = data.get("sha256")
        consent = data.get("consent")
        return cls(data["name"], str(sha256).lower() if sha256 else None,
                   ConsentRecord.from_json(consent, where) if consent is not None else None)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "sha256": self.sha256}
        if self.consent is not None:
            data["consent"] = self.consent.to_json()
        return data


@dataclass(frozen=True)
class RecordingFacts:
    """Everything a recording's manifest states besides the signature.

    `source` says what was recorded, e.g. "a camera stream" or "video file in.mp4 sent by swapstream client";
    `model` is None when no model changed the frames, and then `source_type` (the IPTC digital source type of
    the input, e.g. DIGITAL_CAPTURE for a camera) is required.
    """

    source: str
    model: ModelFacts | None
    source_type: str | None = None
    software_version: str = field(default=__version__)

    def __post_init__(self) -> None:
        if self.model is None and not (self.source_type or "").startswith(IPTC_SOURCE_TYPES):
            raise ProvenanceError(f"a recording of {self.source} with no model needs its input's IPTC digital "
                                  f"source type ({IPTC_SOURCE_TYPES}...), got {self.source_type!r}")


def manifest_definition(facts: RecordingFacts, title: str) -> dict[str, Any]:
    """The manifest definition c2pa's Builder takes for a recording called `title`."""
    agent = {"name": SOFTWARE_NAME, "version": facts.software_version}
    created: dict[str, Any] = {"action": "c2pa.created", "softwareAgent": agent,
                               "description": f"recorded by swapstream from {facts.source}"}
    actions = [created]
    assertions: list[dict[str, Any]] = []
    if facts.model is None:
        created["digitalSourceType"] = facts.source_type
    else:
        created["digitalSourceType"] = COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
        actions.append({"action": "c2pa.edited", "softwareAgent": agent,
                        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                        "description": f"faces replaced by the face-swap model {facts.model.name}"})
        assertions.append({"label": MODEL_ASSERTION, "data": facts.model.to_json()})
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}, *assertions],
    }


def _consent_file(item: Any, where: str) -> ConsentFile:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("sha256"), str):
        raise ProvenanceError(f"{where}: each consent file needs a 'name' and a 'sha256'")
    if not _SHA256.fullmatch(item["sha256"].lower()):
        raise ProvenanceError(f"{where}: consent file {item['name']!r}: sha256 must be 64 hex digits")
    return ConsentFile(item["name"], item["sha256"].lower())
