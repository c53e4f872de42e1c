"""`swapstream train faces --base`: a run starts from a base checkpoint's weights, which must fit its shape."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.fixtures.training import FACE_SIZE, TINY_SHAPE, SyntheticFaceSets
from training.base import write_base
from training.checkpoint import checkpoint_path, read_checkpoint
from training.cli import main as train_main
from training.errors import CheckpointError
from training.train_faces import EVAL_CSV

TINY_FLAGS = [f"--{key.replace('_', '-')}={value}" for key, value in TINY_SHAPE.items()]


@pytest.fixture(scope="module")
def base_checkpoint(tiny_swap_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny run written as a base (weights only)."""
    return write_base(tiny_swap_run, tmp_path_factory.mktemp("base") / "base.safetensors")


def _train(sets: SyntheticFaceSets, out: Path, *extra: str) -> int:
    return train_main(["faces", "--a", str(sets.a), "--b", str(sets.b), "--out", str(out), "--size", str(FACE_SIZE),
                       "--steps", "2", "--batch", "2", "--checkpoint-every", "2", "--preview-every", "2",
                       "--workers", "1", "--threads", "1", "--device", "cpu", "--no-progress", *extra])


def _first_recon(run: Path) -> float:
    with (run / EVAL_CSV).open(newline="") as handle:
        return float(next(csv.DictReader(handle))["recon"])


def test_base_holds_the_runs_weights_without_optimiser_state(base_checkpoint: Path, tiny_swap_run: Path) -> None:
    base = read_checkpoint(base_checkpoint, expected_kind="swap")
    run = read_checkpoint(checkpoint_path(tiny_swap_run))
    assert not base.optim_state and "optim_groups" not in base.metadata
    assert base.model_config == run.model_config and base.step == run.step
    assert base.model_state.keys() == run.model_state.keys()
    assert base_checkpoint.stat().st_size < checkpoint_path(tiny_swap_run).stat().st_size / 2


def test_a_run_from_the_base_starts_where_the_base_left_off(
    base_checkpoint: Path, synthetic_facesets: SyntheticFaceSets, tmp_path: Path
) -> None:
    assert _train(synthetic_facesets, tmp_path / "scratch", *TINY_FLAGS) == 0
    # no shape flags: the run takes the base's shape
    assert _train(synthetic_facesets, tmp_path / "from-base", "--base", str(base_checkpoint)) == 0
    config = json.loads((tmp_path / "from-base" / "model_config.json").read_text())
    assert config == read_checkpoint(base_checkpoint).model_config
    # step 0's reconstruction check runs before any training: the base has learnt these faces, random weights not
    scratch, from_base = _first_recon(tmp_path / "scratch"), _first_recon(tmp_path / "from-base")
    assert from_base < 0.6 * scratch, (from_base, scratch)
    # the new run counts its own steps from 0 and writes its own optimiser state
    run = read_checkpoint(checkpoint_path(tmp_path / "from-base"))
    assert run.step == 2 and run.optim_state
    assert run.train_config["base"] == str(base_checkpoint)


def test_a_base_of_another_shape_or_size_is_refused_naming_the_flag(
    base_checkpoint: Path, synthetic_facesets: SyntheticFaceSets, tmp_path: Path
) -> None:
    other_shape = [flag if not flag.startswith("--bottleneck") else "--bottleneck=64" for flag in TINY_FLAGS]
    with pytest.raises(CheckpointError, match=r"--bottleneck 128 \(not 64\)"):
        _train(synthetic_facesets, tmp_path / "shape", "--base", str(base_checkpoint), *other_shape)
    with pytest.raises(CheckpointError, match="is for 64 px faces, not --size 128"):
        train_main(["faces", "--a", str(synthetic_facesets.a), "--b", str(synthetic_facesets.b),
                    "--out", str(tmp_path / "size"), "--size", "128", "--base", str(base_checkpoint), "--no-progress"])
    assert not (tmp_path / "shape" / "checkpoint.safetensors").exists()


def test_a_missing_base_is_a_flag_error(synthetic_facesets: SyntheticFaceSets, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _train(synthetic_facesets, tmp_path / "run", "--base", str(tmp_path / "nope.safetensors"))
    assert "--base" in capsys.readouterr().err
