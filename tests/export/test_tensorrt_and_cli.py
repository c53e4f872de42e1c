"""TensorRT availability handling and the command line's checks of its flags."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from export.cli import main
from export.config import ExportConfig
from export.errors import ExportError, TensorRTUnavailable
from export.onnx_export import plan_graphs
from export.runner import run_prefixes
from swapstream.cli import main as swapstream_main
from training.checkpoint import load_run
from training.errors import CheckpointError


def _require_no_tensorrt() -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here; these tests cover the machine without it")


def test_explicit_tensorrt_without_tensorrt_fails_with_its_reason(tiny_digits_run: Path, tmp_path: Path) -> None:
    _require_no_tensorrt()
    out = tmp_path / "models"
    with pytest.raises(TensorRTUnavailable, match=r"--tensorrt: .*'tensorrt' package does not import"):
        main([str(tiny_digits_run), "--out", str(out), "--tensorrt"])
    assert not (out / "manifest.json").exists()  # it failed before doing any work


def test_explicit_tensorrt_through_swapstream_cli(tiny_digits_run: Path, tmp_path: Path, capsys) -> None:
    _require_no_tensorrt()
    code = swapstream_main(["export", str(tiny_digits_run), "--out", str(tmp_path / "m"), "--tensorrt"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("swapstream export: error: --tensorrt: cannot build TensorRT engines")
    assert "tensorrt" in err and "gpu extra" in err


def test_plain_export_says_it_skipped_tensorrt(export_call) -> None:
    _require_no_tensorrt()
    assert "skipping TensorRT engines: the 'tensorrt' package does not import" in export_call.log_text
    assert "TensorRT skipped: the 'tensorrt' package does not import" in export_call.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "0"], "--max-batch must be at least 1"),
        (["--opset", "13"], "--opset must be between 17"),
    ],
)
def test_bad_flags_are_named(tiny_digits_run: Path, tmp_path: Path, flags: list[str], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        main([str(tiny_digits_run), "--out", str(tmp_path / "m"), *flags])


def test_missing_run_and_bad_checkpoint_are_named(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=f"RUN {tmp_path / 'absent'}: not a folder"):
        main([str(tmp_path / "absent"), "--out", str(tmp_path / "m")])
    broken = tmp_path / "broken-run"
    broken.mkdir()
    (broken / "checkpoint.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(CheckpointError, match="broken-run"):
        main([str(broken), "--out", str(tmp_path / "m")])
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_out_must_be_a_folder(tiny_digits_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ExportError, match="--out"):
        ExportConfig(runs=(tiny_digits_run,), out=target)


def test_several_face_runs_get_prefixed_names(tiny_swap_run: Path, tiny_digits_run: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "alice-bob", tmp_path / "carol-dave"
    for target in (first, second):
        shutil.copytree(tiny_swap_run, target)
    runs = [(path, load_run(path)) for path in (first, second, tiny_digits_run)]
    prefixes = run_prefixes(runs)
    assert prefixes == {first: "alice-bob.", second: "carol-dave.", tiny_digits_run: ""}
    names = [plan.name for path, loaded in runs for plan in plan_graphs(loaded, prefixes[path])]
    assert names == ["alice-bob.swap_a2b", "alice-bob.swap_b2a", "carol-dave.swap_a2b", "carol-dave.swap_b2a",
                     "digits"]

    clash = tmp_path / "elsewhere" / "alice-bob"
    shutil.copytree(tiny_swap_run, clash)
    with pytest.raises(ExportError, match="share the folder name 'alice-bob'"):
        run_prefixes([(first, runs[0][1]), (clash, runs[0][1])])
