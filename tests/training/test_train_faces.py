"""The face-swap training loop: resume (also after SIGKILL), SIGTERM, bad input, outputs of a run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
import torch

from swapstream.cli import main as swapstream_main
from tests.fixtures.training import FACE_SIZE, SyntheticFaceSets, TinySwapRun
from training.checkpoint import checkpoint_path, load_run, read_checkpoint
from training.errors import CheckpointError, TrainingError
from training.train_faces import LOSSES_CSV, FaceTrainConfig, ModelShape, train_faces

REPO = Path(__file__).resolve().parents[2]
MICRO = ModelShape(encoder_channels=8, bottleneck=32, code_channels=16, decoder_channels=16, residual_blocks=0)
MICRO_FLAGS = ["--encoder-channels", "8", "--bottleneck", "32", "--code-channels", "16", "--decoder-channels", "16",
               "--residual-blocks", "0"]


def _micro_config(sets: SyntheticFaceSets, out: Path, steps: int, **overrides: object) -> FaceTrainConfig:
    base = FaceTrainConfig(faces_a=sets.a, faces_b=sets.b, out=out, size=FACE_SIZE, steps=steps, batch=2,
                           device="cpu", preview_every=1000, checkpoint_every=3, workers=1, threads=1, seed=5,
                           shape=MICRO, lr_final=1.0, progress=False)
    return replace(base, **overrides)


def _loss_steps(run_dir: Path) -> list[int]:
    with (run_dir / LOSSES_CSV).open(newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def test_tiny_run_writes_checkpoint_previews_and_csvs(tiny_swap_run_info: TinySwapRun) -> None:
    run_dir = tiny_swap_run_info.run_dir
    run = load_run(run_dir)
    assert run.kind == "swap" and run.step == tiny_swap_run_info.steps
    assert run.model_config["face_size"] == FACE_SIZE
    assert _loss_steps(run_dir) == list(range(1, tiny_swap_run_info.steps + 1))
    preview = cv2.imread(str(run_dir / "preview.png"))
    # rows A, A->A, A->B, B, B->B, B->A; four faces across
    assert preview.shape == (6 * FACE_SIZE, 4 * FACE_SIZE, 3)
    assert len(list((run_dir / "previews").glob("step_*.png"))) == 2


def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(
    synthetic_facesets: SyntheticFaceSets, tmp_path: Path
) -> None:
    straight = _micro_config(synthetic_facesets, tmp_path / "straight", steps=6)
    train_faces(straight)
    split = _micro_config(synthetic_facesets, tmp_path / "split", steps=3)
    first = train_faces(split)
    assert first.step == 3
    second = train_faces(replace(split, steps=6, resume=True))
    assert second.step == 6
    assert _loss_steps(tmp_path / "split") == [1, 2, 3, 4, 5, 6]
    a = read_checkpoint(checkpoint_path(tmp_path / "straight"))
    b = read_checkpoint(checkpoint_path(tmp_path / "split"))
    assert a.step == b.step == 6
    # step, optimiser moments and data order all carried over: the weights match bit for bit
    for name, tensor in a.model_state.items():
        torch.testing.assert_close(b.model_state[name], tensor, rtol=0, atol=0, msg=name)
    for name, tensor in a.optim_state.items():
        torch.testing.assert_close(b.optim_state[name], tensor, rtol=0, atol=0, msg=name)


@contextmanager
def _cli_run(sets: SyntheticFaceSets, out: Path, checkpoint_every: int) -> Iterator[subprocess.Popen[bytes]]:
    """`swapstream train faces` in a child process; killed (if still running) and its pipe closed on exit."""
    command = [sys.executable, "-m", "training.cli", "faces", "--a", str(sets.a), "--b", str(sets.b),
               "--out", str(out), "--size", str(FACE_SIZE), "--steps", "100000", "--batch", "2",
               "--checkpoint-every", str(checkpoint_every), "--preview-every", "100000", "--workers", "1",
               "--threads", "1", "--device", "cpu", "--no-progress", *MICRO_FLAGS]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _wait_for_checkpoint_step(process: subprocess.Popen[bytes], path: Path, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"training exited early: {process.stderr.read().decode() if process.stderr else ''}")
        if path.exists():
            try:
                step = read_checkpoint(path).step
            except CheckpointError as exc:  # never acceptable: the file must always be whole
                raise AssertionError(f"checkpoint seen corrupt while training: {exc}") from exc
            if step >= at_least:
                return step
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step >= {at_least} within {timeout} s")


@pytest.mark.slow
def test_sigkill_between_checkpoints_then_resume(synthetic_facesets: SyntheticFaceSets, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    with _cli_run(synthetic_facesets, out, checkpoint_every=5) as process:
        seen = _wait_for_checkpoint_step(process, checkpoint_path(out), at_least=10, timeout=120)
        time.sleep(0.3)  # let it get part-way to the next checkpoint
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    checkpoint = read_checkpoint(checkpoint_path(out), expected_kind="swap")  # loads: never half-written
    assert checkpoint.step >= seen and checkpoint.step % 5 == 0
    logged = _loss_steps(out)
    assert max(logged) >= checkpoint.step  # the log had run ahead of the checkpoint

    resumed = train_faces(_micro_config(synthetic_facesets, out, steps=checkpoint.step + 2, resume=True,
                                        checkpoint_every=5))
    assert resumed.step == checkpoint.step + 2
    # the resumed run started from the checkpoint's step, and the rows the killed run wrote after it are gone
    assert _loss_steps(out) == list(range(1, checkpoint.step + 3))
    assert load_run(out).step == checkpoint.step + 2


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_at_the_current_step(synthetic_facesets: SyntheticFaceSets, tmp_path: Path) -> None:
    out = tmp_path / "terminated"
    with _cli_run(synthetic_facesets, out, checkpoint_every=1000) as process:
        deadline = time.monotonic() + 120
        while not (out / LOSSES_CSV).exists() or len(_loss_steps(out)) < 3:
            assert time.monotonic() < deadline and process.poll() is None, "training did not start"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    checkpoint = read_checkpoint(checkpoint_path(out))
    assert checkpoint.step == max(_loss_steps(out)) >= 3


def test_corrupt_checkpoint_on_resume_names_the_file(
    synthetic_facesets: SyntheticFaceSets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "corrupt"
    out.mkdir()
    ckpt = checkpoint_path(out)
    ckpt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + b"\x00" * 64)
    argv = ["train", "faces", "--a", str(synthetic_facesets.a), "--b", str(synthetic_facesets.b), "--out", str(out),
            "--steps", "2", "--batch", "2", "--resume", "--device", "cpu", "--no-progress", *MICRO_FLAGS]
    assert swapstream_main(argv) == 1
    err = capsys.readouterr().err
    assert "swapstream train: error:" in err and str(ckpt) in err and "corrupt" in err


def test_eye_and_mouth_weights_reach_the_run_one_by_one_or_both_at_once(
    synthetic_facesets: SyntheticFaceSets, tmp_path: Path
) -> None:
    """--eyes-mouth-weight sets both (the recipes that use it train as before); --mouth-weight overrides one."""
    for name, flags, expected in (("both", ["--eyes-mouth-weight", "10"], (10.0, 10.0)),
                                  ("split", ["--eyes-mouth-weight", "10", "--mouth-weight", "20"], (10.0, 20.0))):
        out = tmp_path / name
        argv = ["train", "faces", "--a", str(synthetic_facesets.a), "--b", str(synthetic_facesets.b), "--out",
                str(out), "--steps", "1", "--batch", "2", "--workers", "1", "--device", "cpu", "--no-progress",
                *MICRO_FLAGS, *flags]
        assert swapstream_main(argv) == 0
        loss = read_checkpoint(checkpoint_path(out)).train_config["loss"]
        assert (loss["eyes"], loss["mouth"]) == expected


def test_resume_without_checkpoint_and_overwrite_without_resume_are_refused(
    synthetic_facesets: SyntheticFaceSets, tmp_path: Path
) -> None:
    out = tmp_path / "fresh"
    with pytest.raises(CheckpointError, match="does not exist") as info:
        train_faces(_micro_config(synthetic_facesets, out, steps=1, resume=True))
    assert str(checkpoint_path(out)) in str(info.value)
    train_faces(_micro_config(synthetic_facesets, out, steps=1))
    with pytest.raises(TrainingError, match="--resume") as info:
        train_faces(_micro_config(synthetic_facesets, out, steps=2))
    assert str(checkpoint_path(out)) in str(info.value)


def test_bad_face_folders_fail_through_the_cli_with_the_path(
    tmp_path: Path, synthetic_facesets: SyntheticFaceSets, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for a_dir, expected in ((tmp_path / "missing", "does not exist"), (empty, "is empty")):
        argv = ["train", "faces", "--a", str(a_dir), "--b", str(synthetic_facesets.b), "--out",
                str(tmp_path / "run"), "--steps", "1", "--no-progress"]
        assert swapstream_main(argv) == 1
        err = capsys.readouterr().err
        assert str(a_dir) in err and expected in err


@pytest.mark.parametrize(("flag", "value"), [("--size", "100"), ("--steps", "0"), ("--batch", "0")])
def test_bad_flags_are_named(flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "faces", "--a", str(tmp_path), "--b", str(tmp_path), "--out", str(tmp_path / "r"), flag, value]
    with pytest.raises(SystemExit) as info:
        swapstream_main(argv)
    assert info.value.code == 2
    assert flag in capsys.readouterr().err
