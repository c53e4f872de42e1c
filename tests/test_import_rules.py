"""The "may import" table of docs/ARCHITECTURE.md, checked by reading every module's imports with `ast`.

Every import counts, also one inside a function or under TYPE_CHECKING: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every package the project installs (pyproject.toml), so a new package cannot slip past the table below.
PACKAGES = tuple(pattern.rstrip("*") for pattern in
                 tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"])
PROJECT = frozenset((*PACKAGES, "bench", "tests"))

# Project packages each package may import (docs/ARCHITECTURE.md). A dotted entry allows that module only.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "swapstream": frozenset(),
    "rtc": frozenset({"swapstream"}),
    "faces": frozenset({"swapstream"}),
    "training": frozenset({"swapstream", "faces"}),
    "export": frozenset({"swapstream", "faces", "training"}),
    "stream_server": frozenset({"swapstream", "faces", "rtc", "provenance"}),
    # from faces: the synthetic face as profiler input, probe_video/VideoInfo for --input files, the MP4 recorder,
    # and their errors
    "clients": frozenset({"swapstream", "rtc", "faces.synthetic", "faces.media", "faces.recording", "faces.errors",
                         "provenance"}),
    "provenance": frozenset({"swapstream"}),
    # `swapstream triton` opens models with the server's own loaders, so both sides check files the same way
    "fleet": frozenset({"swapstream", "stream_server.backends", "stream_server.errors"}),
    # `swapstream evaluate` runs frames through the server's own stages (evaluation/swap_runner.py only); its
    # photo writer lays out the real photos exactly as the demo recipe (training.real_photos) does
    "evaluation": frozenset({"swapstream", "faces", "stream_server", "training.real_photos"}),
}
# Third-party packages of the train extra (pyproject.toml): the server install leaves them out.
TRAIN_ONLY = frozenset({"torch", "onnx", "onnxscript", "safetensors", "sklearn", "skimage", "h5py"})
# What the packages of the server install may import, with everything they import in turn.
SERVER_INSTALL = ("swapstream", "rtc", "faces", "stream_server", "clients", "provenance")


@dataclass(frozen=True)
class Import:
    """One imported module, as written in `importer`'s source."""

    importer: str
    module: str
    line: int
    names: tuple[str, ...] = ()

    @property
    def top(self) -> str:
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.module}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@cache
def _imports_of(path: Path) -> tuple[Import, ...]:
    importer = str(path.relative_to(ROOT))
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=importer)):
        if isinstance(node, ast.Import):
            found += [Import(importer, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, f"{importer}:{node.lineno}: use absolute imports"
            found.append(Import(importer, node.module, node.lineno, tuple(alias.name for alias in node.names)))
    return tuple(found)


def _package_imports(package: str) -> Iterator[Import]:
    for path in _files(package):
        yield from _imports_of(path)


def _is_stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names or module == "__future__"


def _allowed(module: str, allowed: frozenset[str]) -> bool:
    return any(module == entry or module.startswith(entry + ".") for entry in allowed)


def _source_of(module: str) -> Path | None:
    """The file of a project module (a package's __init__.py for a package); None if there is none."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _project_modules(imported: Import) -> Iterator[str]:
    """The project modules an import loads: the module, its parent packages and imported submodules."""
    parts = imported.module.split(".")
    for end in range(1, len(parts) + 1):
        yield ".".join(parts[:end])
    for name in imported.names:
        if _source_of(f"{imported.module}.{name}") is not None:
            yield f"{imported.module}.{name}"


def _closure(packages: tuple[str, ...]) -> dict[str, Import | None]:
    """Every project module the packages' modules import, directly or not: module -> the import that brought it."""
    reached: dict[str, Import | None] = {}
    todo = [(_module_name(path), None) for package in packages for path in _files(package)]
    while todo:
        module, via = todo.pop()
        if module in reached:
            continue
        reached[module] = via
        source = _source_of(module)
        if source is None:
            continue
        for imported in _imports_of(source):
            if imported.top in PROJECT:
                todo += [(name, imported) for name in _project_modules(imported)]
    return reached


def test_every_installed_package_has_a_row_in_the_table() -> None:
    assert set(PACKAGES) == set(MAY_IMPORT), "add the package to MAY_IMPORT and to docs/ARCHITECTURE.md"


def test_swapstream_imports_only_the_standard_library() -> None:
    outside = [str(i) for i in _package_imports("swapstream") if i.top != "swapstream" and not _is_stdlib(i.module)]
    assert not outside, outside


def test_rtc_imports_aiortc_and_the_error_root_only() -> None:
    third_party = {i.top for i in _package_imports("rtc") if not _is_stdlib(i.module) and i.top not in PROJECT}
    assert third_party == {"aiortc"}
    allowed = frozenset({"rtc", "swapstream"})
    project = [str(i) for i in _package_imports("rtc") if i.top in PROJECT and not _allowed(i.module, allowed)]
    assert not project, project


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_the_table_allows(package: str) -> None:
    allowed = MAY_IMPORT[package] | {package}
    breaking = [str(i) for i in _package_imports(package) if i.top in PROJECT and not _allowed(i.module, allowed)]
    assert not breaking, f"{package}/ may import {sorted(MAY_IMPORT[package])} of the project: {breaking}"


def test_clients_never_reach_into_the_server() -> None:
    reached = _closure(("clients",))
    server = {module: str(via) for module, via in reached.items() if module.split(".")[0] == "stream_server"}
    assert not server, server


@pytest.mark.parametrize("package", [*PACKAGES, "bench"])
def test_nothing_but_tests_imports_tests(package: str) -> None:
    breaking = [str(i) for i in _package_imports(package) if i.top == "tests"]
    assert not breaking, breaking


def test_bench_uses_public_names_only() -> None:
    private = [
        f"{i} ({', '.join(i.names)})"
        for i in _package_imports("bench")
        if i.top in PROJECT and (any(part.startswith("_") for part in i.module.split(".")[1:])
                                 or any(name.startswith("_") for name in i.names))
    ]
    assert not private, private


@pytest.mark.parametrize("package", SERVER_INSTALL)
def test_the_server_install_and_everything_it_imports_never_imports_torch(package: str) -> None:
    reached = _closure((package,))
    assert any(module.startswith(package) for module in reached)
    heavy = [
        f"{imported} (reached through {reached[module]})"
        for module in reached
        if (source := _source_of(module)) is not None
        for imported in _imports_of(source)
        if imported.top in TRAIN_ONLY
    ]
    assert not heavy, heavy


def test_the_scanner_sees_lazy_imports_and_follows_them() -> None:
    """The rules above are only as good as the scan: it must see imports inside functions and follow them."""
    server = _closure(("stream_server",))
    assert "rtc.jitterbuffer" in server and "faces.align" in server
    lazy = [i for i in _package_imports("clients") if i.module == "faces.synthetic"]
    assert lazy, "clients.profile imports faces.synthetic inside a function; the scan must find it"
