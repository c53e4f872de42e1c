"""The one place that calls c2pa-python: signing a stream and reading a manifest store back.

c2pa-python's API moves between releases (this was written against 0.38, the C2PA Rust SDK 0.91); keeping
every call here means a new release is fixed in one file. It is imported lazily, so that the server and the
clients run where the `provenance` extra is not installed. Settings are per call (a c2pa `Context`), never
the deprecated process-wide `load_settings`, and always offline: no remote manifests, no OCSP.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from types import ModuleType
from typing import Any, BinaryIO

from provenance.errors import C2paUnavailable

_OFFLINE = {"remote_manifest_fetch": False, "ocsp_fetch": False}


def load_c2pa() -> ModuleType:
    """The c2pa module; C2paUnavailable says how to install it."""
    try:
        module = importlib.import_module("c2pa")
    except ImportError as exc:
        raise C2paUnavailable("C2PA signing and verifying need c2pa-python: pip install -e '.[provenance]'") from exc
    return module


def c2pa_error_type() -> type[Exception]:
    """c2pa's exception root, for callers that translate it into the project's errors."""
    error: type[Exception] = load_c2pa().C2paError
    return error


@dataclass(frozen=True)
class SignerKeys:
    """What c2pa needs to sign: the algorithm name, the PEM chain (leaf first), the PEM key, a timestamp URL."""

    algorithm: str
    chain_pem: bytes
    key_pem: bytes
    tsa_url: str | None


def sign_stream(keys: SignerKeys, manifest: dict[str, Any], mime_type: str, source: BinaryIO,
                destination: BinaryIO) -> None:
    """Embed a manifest built from `manifest` in `source`'s asset and write the signed asset to `destination`.

    c2pa verifies what it signed before returning; a certificate it rejects raises its C2paError.
    """
    c2pa = load_c2pa()
    info = c2pa.C2paSignerInfo(keys.algorithm.encode(), keys.chain_pem, keys.key_pem,
                               keys.tsa_url.encode() if keys.tsa_url else None)
    with c2pa.Context.from_dict({"verify": _OFFLINE}) as context, \
            c2pa.Signer.from_info(info) as signer, \
            c2pa.Builder(manifest, context=context) as builder:
        builder.sign(signer, mime_type, source, destination)


@dataclass(frozen=True)
class ManifestStore:
    """A file's manifest store as c2pa reports it, validated with the trust settings of the read.

    `store` is c2pa's JSON report (manifests, validation_state, validation_results); `certificates` maps each
    manifest label to its signer's certificate details (subject and issuer as name -> value) where c2pa gave them.
    """

    store: dict[str, Any]
    certificates: dict[str, dict[str, Any]]


def read_manifest_store(path: str, trust_anchors_pem: str | None) -> ManifestStore | None:
    """The manifest store of the file at `path`, or None when it carries none.

    With `trust_anchors_pem` the signer's chain must lead to one of those CAs (and to no other); without it
    the signer is not checked against any trust list. c2pa's own errors (an unreadable asset) propagate.
    """
    c2pa = load_c2pa()
    settings: dict[str, Any] = {"verify": {**_OFFLINE, "verify_trust": trust_anchors_pem is not None}}
    if trust_anchors_pem is not None:
        settings["trust"] = {"trust_anchors": trust_anchors_pem}
    with c2pa.Context.from_dict(settings) as context:
        reader = c2pa.Reader.try_create(path, None, None, context)
        if reader is None:
            return None
        with reader:
            store = json.loads(reader.json())
            certificates = _certificates(json.loads(reader.crjson()))
    return ManifestStore(store, certificates)


def _certificates(crjson: Any) -> dict[str, dict[str, Any]]:
    """label -> certificateInfo from c2pa's crJSON report (the only report that carries full names)."""
    found: dict[str, dict[str, Any]] = {}
    manifests = crjson.get("manifests", []) if isinstance(crjson, dict) else []
    for manifest in manifests if isinstance(manifests, list) else []:
        if not isinstance(manifest, dict):
            continue
        info = (manifest.get("signature") or {}).get("certificateInfo")
        if isinstance(info, dict) and isinstance(manifest.get("label"), str):
            found[manifest["label"]] = info
    return found
