"""The evaluation path never imports torch, and only its adapter module touches stream_server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "evaluation"


def test_evaluation_never_imports_torch() -> None:
    code = ("import sys; import evaluation.cli, evaluation.evaluate, evaluation.figures, evaluation.report, "
            "evaluation.photos; assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_only_the_swap_runner_uses_stream_server() -> None:
    users = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "stream_server" for name in names):
                users.add(path.name)
    assert users == {"swap_runner.py"}
