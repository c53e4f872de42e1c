"""docs/server.md's "The frame's path" names only functions that exist, so the list cannot drift from the code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

SERVER_DOC = Path(__file__).resolve().parents[2] / "docs" / "server.md"
PATH_LINE = re.compile(r"^ *\d+\. `([A-Za-z_][\w.]*)` — ", re.M)  # nested items (alternatives) too


def _frame_path_names() -> list[str]:
    text = SERVER_DOC.read_text(encoding="utf-8")
    section = text.split("## The frame's path", 1)[1].split("\n## ", 1)[0]
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


def test_every_function_on_the_documented_frame_path_exists() -> None:
    names = _frame_path_names()
    assert len(names) >= 30, f"the list was not found or lost lines: {names}"
    missing = []
    for name in names:
        try:
            target = _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
            continue
        assert callable(target), f"{name} is not a function"
    assert not missing, f"docs/server.md names functions that do not exist: {missing}"
