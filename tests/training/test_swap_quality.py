"""What the trained tiny swap model does: the loss falls, A->B looks like B, and A's pose is kept.

The checks are independent of the trainer: identity by nearest centroid over real held-out crops in a
colour space (LAB, 8x8 over the face), pose by a ridge regression trained on real B crops and their
renderer ground truth, then read off the A->B output and compared with A's ground truth.
"""

from __future__ import annotations

import csv
import logging

import cv2
import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from faces.align import template_points
from faces.mask import hull_mask
from tests.fixtures.training import FACE_SIZE, RenderedFace, TinySwapRun
from training.checkpoint import load_run
from training.train_faces import EVAL_CSV

log = logging.getLogger(__name__)

# The fixture's 600-step run (about 2 minutes on 2 cores) gets about 4x; the full 5x needs a longer run
# (see docs/training.md for the 10-minute figure).
MIN_LOSS_DROP_IN_FIXTURE = 3.0
MIN_SWAP_RATE = 0.90
MIN_YAW_CORRELATION = 0.8


def _swap(model: torch.nn.Module, faces: list[RenderedFace], side: str) -> np.ndarray:
    x = torch.from_numpy(np.stack([f.crop for f in faces]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
    with torch.no_grad():
        rgb, _ = model.decode(model.encode(x), side)
    return (rgb.numpy().transpose(0, 2, 3, 1) * 255.0 + 0.5).astype(np.uint8)


def _identity_features(images: np.ndarray) -> np.ndarray:
    face = (hull_mask(template_points(FACE_SIZE), FACE_SIZE) > 0.5).astype(np.float32)[..., None]
    return np.stack([
        cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32) * face, (8, 8),
                   interpolation=cv2.INTER_AREA).ravel()
        for image in images
    ])


def _pose_features(images: np.ndarray) -> np.ndarray:
    grey = np.stack([
        cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).ravel()
        for image in images
    ]).astype(np.float32)
    return (grey - grey.mean(axis=1, keepdims=True)) / (grey.std(axis=1, keepdims=True) + 1e-6)


def test_reconstruction_loss_falls(tiny_swap_run_info: TinySwapRun) -> None:
    with (tiny_swap_run_info.run_dir / EVAL_CSV).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    first, last = rows[0], rows[-1]
    assert int(first["step"]) == 0 and int(last["step"]) == tiny_swap_run_info.steps

    def l1(row: dict[str, str]) -> float:
        return (float(row["recon_l1_a"]) + float(row["recon_l1_b"])) / 2

    drop = l1(first) / l1(last)
    print(f"masked L1 on unwarped faces: {l1(first):.4f} -> {l1(last):.4f} ({drop:.1f}x) in "
          f"{tiny_swap_run_info.steps} steps, {tiny_swap_run_info.seconds:.0f} s; "
          f"recon (L1+DSSIM)/2 {float(first['recon']):.4f} -> {float(last['recon']):.4f}")
    assert drop >= MIN_LOSS_DROP_IN_FIXTURE
    assert float(last["recon"]) < float(first["recon"]) / 2


def test_a_to_b_is_recognised_as_b(tiny_swap_run_info: TinySwapRun) -> None:
    model = load_run(tiny_swap_run_info.run_dir).model
    sets = tiny_swap_run_info.facesets
    real_a = np.stack([f.crop for f in sets.heldout_a])
    real_b = np.stack([f.crop for f in sets.heldout_b])
    centroid_a = _identity_features(real_a).mean(axis=0)
    centroid_b = _identity_features(real_b).mean(axis=0)

    def looks_like_b(images: np.ndarray) -> np.ndarray:
        feats = _identity_features(images)
        return np.linalg.norm(feats - centroid_b, axis=1) < np.linalg.norm(feats - centroid_a, axis=1)

    # the check itself tells the two people apart, and is not fooled by the decoder's blur
    assert looks_like_b(real_b).mean() == 1.0 and looks_like_b(real_a).mean() == 0.0
    assert looks_like_b(_swap(model, sets.heldout_a, "a")).mean() <= 0.1, "A->A must still look like A"
    rate = looks_like_b(_swap(model, sets.heldout_a, "b")).mean()
    print(f"A->B recognised as B in {rate:.0%} of {len(sets.heldout_a)} held-out A frames")
    assert rate >= MIN_SWAP_RATE
    assert looks_like_b(_swap(model, sets.heldout_b, "a")).mean() <= 0.1, "B->A must look like A"


def test_a_to_b_keeps_the_pose_of_a(tiny_swap_run_info: TinySwapRun) -> None:
    model = load_run(tiny_swap_run_info.run_dir).model
    sets = tiny_swap_run_info.facesets
    # a yaw reader trained on real B faces only (ground truth from the renderer)
    reader = Ridge(alpha=10.0).fit(_pose_features(np.stack([f.crop for f in sets.train_b])),
                                   np.array([f.yaw for f in sets.train_b]))
    held_b_error = np.abs(reader.predict(_pose_features(np.stack([f.crop for f in sets.heldout_b])))
                          - np.array([f.yaw for f in sets.heldout_b])).mean()
    true_yaw = np.array([f.yaw for f in sets.heldout_a])
    read_yaw = reader.predict(_pose_features(_swap(model, sets.heldout_a, "b")))
    error = np.abs(read_yaw - true_yaw).mean()
    guess_error = np.abs(true_yaw - true_yaw.mean()).mean()
    correlation = float(np.corrcoef(read_yaw, true_yaw)[0, 1])
    print(f"yaw of A read off A->B: mean error {error:.1f} deg (constant guess {guess_error:.1f} deg, "
          f"reader on real held-out B {held_b_error:.1f} deg), correlation {correlation:.2f}; "
          f"A's yaw spans {true_yaw.min():.0f}..{true_yaw.max():.0f} deg")
    assert guess_error > 5.0, "held-out A frames must vary in pose for this check to mean anything"
    assert correlation >= MIN_YAW_CORRELATION
    assert error <= 0.5 * guess_error
