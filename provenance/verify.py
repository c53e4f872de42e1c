"""Reading a file's C2PA manifest back and judging it: the library behind `swapstream verify`.

A file is valid when it carries a manifest whose signature checks out and whose hashes match the file's bytes
(c2pa's validation state "Valid"). Given trust anchors (`--trust CA.pem`), the signer's chain must also lead to
one of them (state "Trusted"). Without them the signer's identity is reported but not vouched for: anyone can
make a CA, so only a trust list (the C2PA one, or your own CA) says whose signature it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from provenance.certificates import load_certificates
from provenance.errors import AssetError, ProvenanceError
from provenance.facts import AI_SOURCE_TYPES, IPTC_SOURCE_TYPES, MODEL_ASSERTION, ModelFacts
from provenance.native import ManifestStore, c2pa_error_type, read_manifest_store

TRUST_ENVIRONMENT_VARIABLE = "SWAPSTREAM_TRUST"
# Reported when no trust anchors were given; judging trust was not asked for.
_TRUST_CODES = ("signingCredential.untrusted",)
_ACTION_LABELS = ("c2pa.actions", "c2pa.actions.v2")


@dataclass(frozen=True)
class Problem:
    """One validation failure as c2pa reports it: a C2PA status code and its explanation."""

    code: str
    explanation: str

    def __str__(self) -> str:
        return f"{self.code}: {self.explanation}"


@dataclass(frozen=True)
class Verification:
    """What `verify_file` found in a file."""

    path: str
    has_manifest: bool
    valid: bool
    state: str | None  # c2pa's validation state: "Invalid", "Valid" or "Trusted"
    trust_anchors: str | None  # the --trust file, when trust was checked
    problems: tuple[Problem, ...] = ()
    title: str | None = None
    signer: str | None = None
    issuer: str | None = None
    algorithm: str | None = None
    signed_at: str | None = None
    generator: str | None = None
    ai_generated: bool = False
    source_types: tuple[str, ...] = ()
    model: ModelFacts | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = [asdict(p) for p in self.problems]
        data["model"] = self.model.to_json() if self.model is not None else None
        data["source_types"] = list(self.source_types)
        return data


def verify_file(path: Path, trust: Path | None = None) -> Verification:
    """Read and judge the C2PA manifest of `path`; with `trust` (a PEM file of CA certificates) check the chain.

    A file without a manifest, or with one that fails validation, is a result (valid=False), not an error;
    AssetError is raised for a file that is missing or that c2pa cannot parse at all.
    """
    if not path.is_file():
        raise AssetError(f"{path}: no such file")
    anchors = load_certificates(trust, "--trust").pem().decode() if trust is not None else None
    try:
        found = read_manifest_store(str(path), anchors)
    except c2pa_error_type() as exc:
        raise AssetError(f"{path}: c2pa cannot read it: {exc}") from exc
    trust_name = str(trust) if trust is not None else None
    if found is None:
        return Verification(str(path), has_manifest=False, valid=False, state=None, trust_anchors=trust_name,
                            problems=(Problem("manifest.missing", "the file carries no C2PA manifest"),))
    return _judge(path, found, trust_name)


def _judge(path: Path, found: ManifestStore, trust: str | None) -> Verification:
    store = found.store
    label = store.get("active_manifest")
    manifest = store.get("manifests", {}).get(label, {}) if isinstance(label, str) else {}
    state = store.get("validation_state")
    problems = tuple(_explain_trust(p, trust) for p in _problems(store)
                     if trust is not None or p.code not in _TRUST_CODES)
    good_states = ("Trusted",) if trust is not None else ("Valid", "Trusted")
    valid = bool(manifest) and state in good_states and not problems
    if state in good_states and not valid and not problems:
        problems = (Problem("manifest.active.missing", "the manifest store names no active manifest"),)
    source_types = _source_types(manifest)
    certificate = found.certificates.get(label, {}) if isinstance(label, str) else {}
    signature = manifest.get("signature_info") or {}
    return Verification(
        path=str(path), has_manifest=True, valid=valid, state=state, trust_anchors=trust, problems=problems,
        title=manifest.get("title"),
        signer=_name(certificate.get("subject")) or signature.get("common_name"),
        issuer=_name(certificate.get("issuer")) or signature.get("issuer"),
        algorithm=signature.get("alg"), signed_at=signature.get("time"),
        generator=_generator(manifest),
        ai_generated=any(source in AI_SOURCE_TYPES for source in source_types), source_types=source_types,
        model=_model(manifest),
    )


def _problems(store: dict[str, Any]) -> list[Problem]:
    """The failures c2pa found in the active manifest (its older flat status list where there is no other)."""
    results = store.get("validation_results") or {}
    failures = (results.get("activeManifest") or {}).get("failure")
    if failures is None:
        failures = [status for status in store.get("validation_status") or []
                    if not str(status.get("code", "")).endswith((".match", ".validated", ".trusted"))]
    return [Problem(str(f.get("code", "?")), str(f.get("explanation", ""))) for f in failures]


def _explain_trust(problem: Problem, trust: str | None) -> Problem:
    if problem.code not in _TRUST_CODES:
        return problem
    return Problem(problem.code, f"{problem.explanation}: the signer's chain does not lead to a CA in {trust}")


def _assertions(manifest: dict[str, Any], labels: tuple[str, ...]) -> list[Any]:
    return [a.get("data") for a in manifest.get("assertions", []) if a.get("label") in labels]


def _source_types(manifest: dict[str, Any]) -> tuple[str, ...]:
    types: list[str] = []
    for data in _assertions(manifest, _ACTION_LABELS):
        for action in (data or {}).get("actions", []):
            source = action.get("digitalSourceType")
            if isinstance(source, str) and source not in types:
                types.append(source)
    return tuple(types)


def _model(manifest: dict[str, Any]) -> ModelFacts | None:
    for data in _assertions(manifest, (MODEL_ASSERTION,)):
        try:
            return ModelFacts.from_json(data, MODEL_ASSERTION)
        except ProvenanceError:
            return None
    return None


def _generator(manifest: dict[str, Any]) -> str | None:
    infos = manifest.get("claim_generator_info") or []
    if not infos:
        return manifest.get("claim_generator")
    first = infos[0]
    return " ".join(str(first[key]) for key in ("name", "version") if first.get(key)) or None


def _name(parts: Any) -> str | None:
    """{"CN": "signer", "O": "org"} -> "CN=signer, O=org"."""
    if not isinstance(parts, dict) or not parts:
        return None
    return ", ".join(f"{key}={value}" for key, value in parts.items())


def format_verification(result: Verification) -> str:
    """The human-readable report `swapstream verify` prints."""
    lines = [f"{result.path}: {_verdict(result)}"]
    if result.has_manifest:
        if result.signer or result.issuer:
            lines.append(f"  signed by:    {result.signer or '?'} (issued by {result.issuer or '?'})"
                         + (f", {result.algorithm}" if result.algorithm else ""))
        lines.append(f"  signed at:    {result.signed_at or 'no trusted timestamp'}")
        if result.generator:
            lines.append(f"  made by:      {result.generator}")
        kinds = ", ".join(s.removeprefix(IPTC_SOURCE_TYPES) for s in result.source_types) or "none stated"
        lines.append(f"  AI-generated: {'yes' if result.ai_generated else 'no'} (digital source type: {kinds})")
        if result.model is not None:
            lines.append(f"  model:        {result.model.name}, sha256 {result.model.sha256 or 'not stated'}")
            consent = result.model.consent
            lines.append("  consent:      " + (
                f"{', '.join(consent.people)} on {consent.time}: \"{consent.statement}\" ({len(consent.files)} file(s))"
                if consent is not None else "no consent record"))
    lines += [f"  problem:      {problem}" for problem in result.problems]
    return "\n".join(lines)


def _verdict(result: Verification) -> str:
    if not result.has_manifest:
        return "NOT VALID: no C2PA manifest"
    if not result.valid:
        return "NOT VALID C2PA manifest"
    if result.trust_anchors is not None:
        return f"VALID C2PA manifest, signer trusted (its chain leads to {result.trust_anchors})"
    return ("VALID C2PA manifest (signature and content hashes check out; the signer was not checked against a "
            "trust list: pass --trust CA.pem)")
