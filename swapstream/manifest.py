"""`MODELS/manifest.json` as one typed model: its entries, the reader, the writer and the one way to pick a model.

Export builds `ModelEntry`s and writes them with `write_manifest`; the server reads them with `read_manifest` and
picks a model with `resolve_entry` (by exact name, else the first swap model of a direction). Both sides share
this module, so what one writes the other reads back unchanged. Standard library only (the server never imports
torch or onnx). The schema is in docs/CONTRACTS.md; the small pieces an entry is made of (TensorSpec, EngineInfo,
sha256_file) are in swapstream/manifest_schema.py. Every problem is a ManifestError naming the file and model.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal, TypeGuard, TypeVar

from swapstream.atomic import atomic_write_text
from swapstream.errors import ManifestError, UnknownModelError
from swapstream.manifest_schema import FORMAT_VERSION, MANIFEST_NAME, EngineInfo, TensorSpec

ModelKind = Literal["swap", "digits"]
Direction = Literal["a2b", "b2a"]
Precision = Literal["fp32", "fp16"]
KINDS: tuple[ModelKind, ...] = ("swap", "digits")
DIRECTIONS: tuple[Direction, ...] = ("a2b", "b2a")
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16")
# Element types a model's inputs and outputs may have (the server maps each to a numpy dtype).
TENSOR_DTYPES = ("float32", "float16", "int64", "int32", "uint8")

_Choice = TypeVar("_Choice", bound=str)


@dataclass(frozen=True)
class ConsentFile:
    """One file the people in a model agreed to have used: its name as uploaded and its sha256."""

    name: str
    sha256: str


@dataclass(frozen=True)
class Consent:
    """The consent record a model was made under: what was agreed, by whom, when, and for which files."""

    statement: str
    people: tuple[str, ...]
    time: str
    files: tuple[ConsentFile, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON form."""
        return {"statement": self.statement, "people": list(self.people), "time": self.time,
                "files": [asdict(item) for item in self.files]}


@dataclass(frozen=True)
class ModelEntry:
    """One exported model, as export writes it and the server reads it (fields as in docs/CONTRACTS.md)."""

    name: str
    kind: ModelKind
    direction: Direction | None
    file: str
    sha256: str
    precision: Precision
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    face_size: int | None
    output_semantics: str | None = None
    opset: int = 0
    engine: EngineInfo | None = None
    source: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)
    created: str = ""
    versions: dict[str, str | None] = field(default_factory=dict)
    exporter: str | None = None
    consent: Consent | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON form, keys in the contract's order (`consent` only where there is one)."""
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "direction": self.direction,
            "file": self.file,
            "sha256": self.sha256,
            "precision": self.precision,
            "engine": asdict(self.engine) if self.engine is not None else None,
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
            "face_size": self.face_size,
            "output_semantics": self.output_semantics,
            "opset": self.opset,
            "source": dict(self.source),
            "parity": dict(self.parity),
            "created": self.created,
            "versions": dict(self.versions),
            "exporter": self.exporter,
        }
        if self.consent is not None:
            data["consent"] = self.consent.to_json()
        return data


@dataclass(frozen=True)
class Manifest:
    """A whole manifest: its entries and the folder their files are relative to."""

    models_dir: Path
    models: tuple[ModelEntry, ...]
    created: str = ""

    @property
    def path(self) -> Path:
        """Where the manifest file is (or will be written)."""
        return self.models_dir / MANIFEST_NAME

    @property
    def names(self) -> list[str]:
        """Every model name, in manifest order."""
        return [entry.name for entry in self.models]

    def resolve(self, name_or_direction: str) -> ModelEntry:
        """See `resolve_entry`; the UnknownModelError also names this manifest's file."""
        try:
            return resolve_entry(self.models, name_or_direction)
        except UnknownModelError as exc:
            raise UnknownModelError(f"{self.path}: {exc}") from exc

    def of_kind(self, kind: ModelKind) -> list[ModelEntry]:
        """Entries of one kind, in manifest order."""
        return [entry for entry in self.models if entry.kind == kind]

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON form."""
        return {"format_version": FORMAT_VERSION, "created": self.created,
                "models": [entry.to_json() for entry in self.models]}


def resolve_entry(entries: Iterable[ModelEntry], name_or_direction: str, kind: ModelKind | None = None) -> ModelEntry:
    """The one way to pick a model: the entry called `name_or_direction`, else the first swap model whose direction
    it is ("a2b" / "b2a"). `kind` limits the choice to one kind. UnknownModelError lists the choices: every name,
    then the directions there are."""
    candidates = [entry for entry in entries if kind is None or entry.kind == kind]
    for entry in candidates:
        if entry.name == name_or_direction:
            return entry
    for entry in candidates:
        if entry.kind == "swap" and entry.direction == name_or_direction:
            return entry
    directions = [d for d in DIRECTIONS if any(e.kind == "swap" and e.direction == d for e in candidates)]
    choices = ", ".join([*(entry.name for entry in candidates), *directions]) or "none"
    raise UnknownModelError(f"no {kind + ' ' if kind else ''}model {name_or_direction!r}; choices: {choices}")


def utc_now(timespec: Literal["seconds", "milliseconds", "microseconds"] = "seconds") -> str:
    """The current time as the manifest writes it: ISO 8601, UTC, `Z` suffix; whole seconds unless asked."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


def model_file(models_dir: Path, relative: str, where: str) -> Path:
    """`models_dir / relative`, or ManifestError (prefixed `where`) when it would leave the folder.

    A manifest names files relative to its own folder; an absolute path, a `..` part or a link out of the folder
    would let a manifest point the server at any file on the machine.
    """
    posix = PurePosixPath(relative.replace("\\", "/"))
    if not posix.parts or posix.is_absolute() or ".." in posix.parts or PureWindowsPath(relative).drive:
        raise ManifestError(f"{where}: file {relative!r} is not a path inside the models folder {models_dir}")
    path = models_dir / relative
    if not path.resolve().is_relative_to(models_dir.resolve()):
        raise ManifestError(f"{where}: file {relative!r} leads out of the models folder {models_dir} "
                            f"(to {path.resolve()})")
    return path


def read_manifest(models_dir: str | Path) -> Manifest:
    """Read and check `models_dir/manifest.json`; ManifestError naming the file (and model) on any problem."""
    models_dir = Path(models_dir)
    path = models_dir / MANIFEST_NAME
    if not models_dir.is_dir():
        raise ManifestError(f"models folder {models_dir} does not exist")
    if not path.is_file():
        raise ManifestError(f"{path} does not exist; create it with `swapstream export RUN... --out {models_dir}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object at the top level")
    if data.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{path}: format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
    raw_models = data.get("models")
    if not isinstance(raw_models, list):
        raise ManifestError(f"{path}: 'models' must be a list")
    manifest = Manifest(models_dir, tuple(_parse_entry(path, index, raw) for index, raw in enumerate(raw_models)),
                        created=str(data.get("created", "")))
    check_manifest(manifest)
    return manifest


def write_manifest(manifest: Manifest) -> Path:
    """Check `manifest` as the reader will, then write its file atomically and durably; returns the file's path."""
    check_manifest(manifest)
    return atomic_write_text(manifest.path, json.dumps(manifest.to_json(), indent=2) + "\n")


def check_manifest(manifest: Manifest) -> None:
    """ManifestError naming the file where model names repeat or a model's files leave the models folder."""
    names = manifest.names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ManifestError(f"{manifest.path}: model names repeat: {', '.join(repeated)}")
    for entry in manifest.models:
        where = f"{manifest.path}: model {entry.name!r}"
        model_file(manifest.models_dir, entry.file, where)
        if entry.engine is not None:
            model_file(manifest.models_dir, entry.engine.file, f"{where} engine")


# ---------------------------------------------------------------------------------------------- parsing


def _parse_entry(path: Path, index: int, raw: object) -> ModelEntry:
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: models[{index}] is not an object")
    where = f"{path}: model {raw.get('name', index)!r}"
    kind = _choice(where, "kind", _field(where, raw, "kind"), KINDS)
    direction_raw = raw.get("direction")
    if kind == "swap" and direction_raw not in DIRECTIONS:
        raise ManifestError(f"{where}: a swap model needs direction 'a2b' or 'b2a', not {direction_raw!r}")
    direction = None if direction_raw is None else _choice(where, "direction", direction_raw, DIRECTIONS)
    inputs = tuple(_parse_spec(where, spec) for spec in _list(where, raw, "inputs"))
    outputs = tuple(_parse_spec(where, spec) for spec in _list(where, raw, "outputs"))
    if len(inputs) != 1:
        raise ManifestError(f"{where}: expected exactly one input, found {len(inputs)}")
    face_size = raw.get("face_size")
    if kind == "swap" and not _is_int(face_size, minimum=1):
        raise ManifestError(f"{where}: a swap model needs a positive integer face_size, not {face_size!r}")
    if face_size is not None and not _is_int(face_size, minimum=1):
        raise ManifestError(f"{where}: face_size must be a positive integer or null, not {face_size!r}")
    parity: dict[str, float] = {}
    for key, figure in _mapping(where, raw, "parity").items():
        if not _is_number(figure):
            raise ManifestError(f"{where}: parity figure {key!r} must be a number, not {figure!r}")
        parity[key] = float(figure)
    versions: dict[str, str | None] = {}
    for key, version in _mapping(where, raw, "versions").items():
        if version is not None and not isinstance(version, str):
            raise ManifestError(f"{where}: version of {key!r} must be a string or null, not {version!r}")
        versions[key] = version
    return ModelEntry(
        name=_text(where, raw, "name"),
        kind=kind,
        direction=direction,
        file=_text(where, raw, "file"),
        sha256=_text(where, raw, "sha256").lower(),
        precision=_choice(where, "precision", raw.get("precision", "fp32"), PRECISIONS),
        inputs=inputs,
        outputs=outputs,
        face_size=face_size if _is_int(face_size, minimum=1) else None,
        output_semantics=_optional_text(where, raw, "output_semantics"),
        opset=_int(where, raw.get("opset", 0), "opset", minimum=0),
        engine=_parse_engine(where, raw.get("engine")),
        source=dict(_mapping(where, raw, "source")),
        parity=parity,
        created=str(raw.get("created", "")),
        versions=versions,
        exporter=_optional_text(where, raw, "exporter"),
        consent=_parse_consent(where, raw.get("consent")),
    )


def _parse_spec(where: str, raw: object) -> TensorSpec:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: tensor spec {raw!r} is not an object")
    name = _text(where, raw, "name")
    dims = _list(where, raw, "shape")
    if not all(isinstance(dim, str) or _is_int(dim, minimum=0) for dim in dims):
        raise ManifestError(f"{where}: tensor {name!r} needs a shape of sizes and axis names, not {dims!r}")
    shape = tuple(dim for dim in dims if isinstance(dim, (int, str)))
    dtype = _text(where, raw, "dtype")
    if dtype not in TENSOR_DTYPES:
        raise ManifestError(f"{where}: tensor {name!r} has unsupported dtype {dtype!r}")
    if not shape or not isinstance(shape[0], str):
        raise ManifestError(f"{where}: tensor {name!r} must start with the batch axis, shape {list(shape)}")
    return TensorSpec(name=name, shape=shape, dtype=dtype)


def _parse_engine(where: str, raw: object) -> EngineInfo | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: 'engine' must be an object or null, not {raw!r}")
    return EngineInfo(file=_text(where, raw, "file"), sha256=_text(where, raw, "sha256").lower(),
                      max_batch=_int(where, _field(where, raw, "max_batch"), "engine max_batch", minimum=1))


def _parse_consent(where: str, raw: object) -> Consent | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: 'consent' must be an object or absent, not {raw!r}")
    listed = _list(where, raw, "people")
    people = tuple(person for person in listed if isinstance(person, str))
    if len(people) != len(listed):
        raise ManifestError(f"{where}: consent 'people' must be a list of names, not {listed!r}")
    files = []
    for item in _list(where, raw, "files") if "files" in raw else []:
        if not isinstance(item, dict):
            raise ManifestError(f"{where}: consent 'files' must list {{name, sha256}} objects, not {item!r}")
        files.append(ConsentFile(name=_text(where, item, "name"), sha256=_text(where, item, "sha256").lower()))
    return Consent(statement=_text(where, raw, "statement"), people=people,
                   time=_text(where, raw, "time"), files=tuple(files))


def _field(where: str, raw: Mapping[str, object], key: str) -> object:
    if key not in raw:
        raise ManifestError(f"{where}: missing field '{key}'")
    return raw[key]


def _text(where: str, raw: Mapping[str, object], key: str) -> str:
    value = _field(where, raw, key)
    if not isinstance(value, str):
        raise ManifestError(f"{where}: '{key}' must be a string, not {value!r}")
    return value


def _optional_text(where: str, raw: Mapping[str, object], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestError(f"{where}: '{key}' must be a string or null, not {value!r}")
    return value


def _list(where: str, raw: Mapping[str, object], key: str) -> list[object]:
    value = _field(where, raw, key)
    if not isinstance(value, list):
        raise ManifestError(f"{where}: '{key}' must be a list, not {value!r}")
    return value


def _mapping(where: str, raw: Mapping[str, object], key: str) -> dict[str, object]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: '{key}' must be an object, not {value!r}")
    return value


def _int(where: str, value: object, what: str, minimum: int) -> int:
    if not _is_int(value, minimum):
        raise ManifestError(f"{where}: {what} must be an integer >= {minimum}, not {value!r}")
    return value


def _is_int(value: object, minimum: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _choice(where: str, what: str, value: object, choices: tuple[_Choice, ...]) -> _Choice:
    for choice in choices:
        if value == choice:
            return choice
    raise ManifestError(f"{where}: {what} {value!r} is not {' or '.join(repr(choice) for choice in choices)}")
