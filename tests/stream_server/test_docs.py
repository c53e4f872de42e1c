"""docs/server.md's "The frame's path" and docs/audio.md's "The sound's path" name only functions that exist, so
the lists cannot drift from the code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
SERVER_DOC = DOCS / "server.md"
PATH_LINE = re.compile(r"^ *\d+\. `([A-Za-z_][\w.]*)` — ", re.M)  # nested items (alternatives) too


def _path_names(doc: Path = SERVER_DOC, heading: str = "## The frame's path") -> list[str]:
    text = doc.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return PATH_LINE.findall(section)


def _resolve(dotted: str) -> object:
    """The object a dotted name means: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize(("doc", "heading", "at_least"), [
    (SERVER_DOC, "## The frame's path", 30),
    (DOCS / "audio.md", "## The sound's path", 10),
])
def test_every_function_on_a_documented_path_exists(doc: Path, heading: str, at_least: int) -> None:
    names = _path_names(doc, heading)
    assert len(names) >= at_least, f"the list was not found or lost lines: {names}"
    missing = []
    for name in names:
        try:
            target = _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
            continue
        assert callable(target), f"{name} is not a function"
    assert not missing, f"{doc.name} names functions that do not exist: {missing}"
