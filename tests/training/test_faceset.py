"""Face-set reading, augmentation (warp on the input only) and the loss functions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.fixtures.training import SyntheticFaceSets
from training.errors import DatasetError
from training.faceset import BatchStream, FaceSet, make_side_batch
from training.losses import LossWeights, face_losses, masked_dssim, masked_l1
from training.warp import AugmentConfig, augment_face


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as info:
        FaceSet(tmp_path / "no-such-faces", 64)
    assert str(tmp_path / "no-such-faces") in str(info.value)


def test_empty_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is empty") as info:
        FaceSet(tmp_path, 64)
    assert str(tmp_path) in str(info.value)
    (tmp_path / "faces.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="lists no faces"):
        FaceSet(tmp_path, 64)


def test_pngs_without_metadata_are_refused(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(DatasetError, match="faces.jsonl") as info:
        FaceSet(tmp_path, 64)
    assert str(tmp_path) in str(info.value)


def _copy_set(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


def test_wrong_size_face_is_named(synthetic_facesets: SyntheticFaceSets, tmp_path: Path) -> None:
    folder = _copy_set(synthetic_facesets.a, tmp_path / "a")
    victim = sorted(folder.glob("*.png"))[5]
    cv2.imwrite(str(victim), np.zeros((96, 96, 3), np.uint8))
    with pytest.raises(DatasetError, match="96x96") as info:
        FaceSet(folder, 64)
    assert str(victim) in str(info.value)
    # and the whole set at another size than --size
    with pytest.raises(DatasetError, match="--size 128"):
        FaceSet(synthetic_facesets.a, 128)


def test_listed_but_missing_or_broken_face_is_named(synthetic_facesets: SyntheticFaceSets, tmp_path: Path) -> None:
    folder = _copy_set(synthetic_facesets.b, tmp_path / "b")
    gone = sorted(folder.glob("*.png"))[3]
    gone.unlink()
    with pytest.raises(DatasetError, match="does not exist") as info:
        FaceSet(folder, 64)
    assert str(gone) in str(info.value)
    gone.write_bytes(b"not a png at all, just text")
    with pytest.raises(DatasetError, match="not a PNG") as info:
        FaceSet(folder, 64)
    assert str(gone) in str(info.value)


def test_malformed_metadata_line_is_named(synthetic_facesets: SyntheticFaceSets, tmp_path: Path) -> None:
    folder = _copy_set(synthetic_facesets.a, tmp_path / "a")
    lines = (folder / "faces.jsonl").read_text().splitlines()
    lines[2] = json.dumps({"file": "x.png"})  # no keypoints
    (folder / "faces.jsonl").write_text("\n".join(lines))
    with pytest.raises(DatasetError, match="line 3") as info:
        FaceSet(folder, 64)
    assert str(folder / "faces.jsonl") in str(info.value)


def test_faces_and_masks_load_as_rgb_with_the_face_inside_the_mask(synthetic_facesets: SyntheticFaceSets) -> None:
    faceset = FaceSet(synthetic_facesets.a, 64)
    assert len(faceset) == len(synthetic_facesets.train_a)
    face, mask = faceset.load(0)
    np.testing.assert_array_equal(face, synthetic_facesets.train_a[0].crop)
    assert face.shape == (64, 64, 3) and face.dtype == np.uint8
    assert mask.shape == (64, 64) and 0.0 <= mask.min() and mask.max() <= 1.0
    keypoints = faceset.records[0].keypoints
    for x, y in keypoints:  # eyes, nose and mouth lie well inside the face mask
        assert mask[int(round(y)), int(round(x))] > 0.9
    assert mask[0, 0] == 0.0 and mask[63, 63] == 0.0


def test_augmentation_warps_the_input_only(synthetic_facesets: SyntheticFaceSets) -> None:
    faceset = FaceSet(synthetic_facesets.a, 64)
    face, mask = faceset.load(1)
    keypoints = faceset.records[1].keypoints
    no_geometry = AugmentConfig(rotation_deg=0, scale=0, shift=0, flip=False, brightness=0, contrast=0,
                                channel_gain=0)
    sample = augment_face(face, mask, keypoints, np.random.default_rng(0), no_geometry)
    # target is the face itself; the input is a warped version of it
    np.testing.assert_allclose(sample.target, face.astype(np.float32) / 255.0, atol=1e-6)
    difference = np.abs(sample.input - sample.target).mean()
    assert 0.005 < difference < 0.1, difference
    nowarp = AugmentConfig(warp_strength=0.0)
    sample = augment_face(face, mask, keypoints, np.random.default_rng(1), nowarp)
    np.testing.assert_array_equal(sample.input, sample.target)
    # the affine/flip moved target, mask and keypoints together: keypoints stay on bright mask
    for x, y in sample.keypoints:
        assert sample.mask[int(round(y)), int(round(x))] > 0.8
    assert sample.keypoints[0, 0] < sample.keypoints[1, 0], "order stays image-left eye first after a flip"


def test_batches_depend_only_on_seed_and_step(synthetic_facesets: SyntheticFaceSets) -> None:
    faces_a = FaceSet(synthetic_facesets.a, 64)
    faces_b = FaceSet(synthetic_facesets.b, 64)

    def batch_at(start: int, skip: int) -> torch.Tensor:
        with BatchStream(faces_a, faces_b, 4, AugmentConfig(), seed=3, start_step=start, workers=2) as stream:
            batches = iter(stream)
            for _ in range(skip):
                next(batches)
            batch = next(batches)
        assert batch.step == start + skip
        return batch.a.input

    # what a resumed run sees at step 5 is what an uninterrupted run saw at step 5
    torch.testing.assert_close(batch_at(0, 5), batch_at(5, 0), rtol=0, atol=0)
    assert not torch.equal(batch_at(5, 0), batch_at(6, 0))
    side = make_side_batch(faces_a, np.arange(3), np.random.default_rng(0), None)
    assert side.input.shape == (3, 3, 64, 64) and side.mask.shape == (3, 1, 64, 64)
    assert side.features.shape == (3, 2, 64, 64)  # eyes, mouth
    assert float(side.features[:, 0].max()) > 0.5 and float(side.features[:, 1].max()) > 0.5


def test_losses_are_zero_for_a_perfect_face_and_ignore_the_background() -> None:
    torch.manual_seed(0)
    target = torch.rand(2, 3, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1.0
    assert float(masked_l1(target, target, mask)) == 0.0
    assert abs(float(masked_dssim(target, target, mask))) < 1e-6
    outside_only = target.clone()
    outside_only[:, :, :4, :] = 0.0  # change pixels where the mask is 0
    assert float(masked_l1(outside_only, target, mask)) == 0.0
    terms = face_losses(torch.full_like(target, 0.5), torch.full_like(mask, 0.5), target, mask, None, LossWeights())
    assert set(terms) == {"l1", "dssim", "mask", "total"} and float(terms["total"]) > 0.3


def test_colour_swap_gives_inputs_the_other_identitys_colours_and_keeps_targets(
        synthetic_facesets: SyntheticFaceSets) -> None:
    faces_a = FaceSet(synthetic_facesets.a, 64)
    faces_b = FaceSet(synthetic_facesets.b, 64)
    indices = np.arange(4)

    def batch(swap: float, other: FaceSet | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        side = make_side_batch(faces_a, indices[:1], np.random.default_rng(7), AugmentConfig(colour_swap=swap),
                               other=other)
        return side.input[0].numpy(), side.target[0].numpy(), side.mask[0, 0].numpy() > 0.5

    plain_input, plain_target, inside = batch(0.0, faces_b)
    alone_input, alone_target, _ = batch(0.0, None)
    np.testing.assert_array_equal(plain_input, alone_input)  # off: the batches runs always saw
    swapped_input, swapped_target, _ = batch(1.0, faces_b)
    np.testing.assert_array_equal(swapped_target, plain_target)  # the target keeps A's own colours

    def face_mean(image: np.ndarray) -> np.ndarray:
        return image.transpose(1, 2, 0)[inside].mean(axis=0)

    b_mean = np.mean([faces_b.load(i)[0][faces_b.load(i)[1] > 0.5].mean(axis=0) / 255.0 for i in range(4)], axis=0)
    # A is fair and B brown: the recoloured input's face moves most of the way to B's colour
    before = np.abs(face_mean(plain_input) - b_mean).sum()
    after = np.abs(face_mean(swapped_input) - b_mean).sum()
    assert after < 0.4 * before, (before, after)
    with pytest.raises(ValueError, match="--colour-swap"):
        AugmentConfig(colour_swap=1.5)
