"""The pad's reduction, pad-like training drawings, the drawn test set and the corrections folder.

The page's side of the reduction is checked against `training.digit_pad` in Chromium
(tests/clients/test_digits_page.py); these tests pin what the reduction and the renderer themselves do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.digit_pad import DIGIT_EXTENT, PAD_LINE_WIDTH, PAD_SIDE, reduce_pad, render_strokes, strokes_to_digit
from training.digits import DigitsTrainConfig, default_digits, read_corrections, train_digits
from training.drawn_digits import drawn_digits, drawn_test_set
from training.errors import DatasetError
from training.pad_digits import pad_like_digits, scan_skeleton


def test_a_stroke_is_a_round_capped_line_of_the_pads_width() -> None:
    start, end = np.array([60.0, 100.0]), np.array([220.0, 100.0])
    ink = render_strokes([np.stack([start, end])])
    assert ink.shape == (PAD_SIDE, PAD_SIDE) and ink.dtype == np.float32
    # Area of a capsule: the segment times the width, plus a disc for the two round caps.
    expected = 160.0 * PAD_LINE_WIDTH + np.pi * (PAD_LINE_WIDTH / 2) ** 2
    assert ink.sum() == pytest.approx(expected, rel=0.01)
    column = ink[:, 140]
    assert column.sum() == pytest.approx(PAD_LINE_WIDTH, abs=0.05)  # antialiased edges, exact width
    assert ink[100, 140] == 1.0 and ink[100, 60 - int(PAD_LINE_WIDTH / 2) - 2] == 0.0


def test_the_reduction_centres_the_ink_and_spans_fourteen_of_sixteen_pixels() -> None:
    assert reduce_pad(np.zeros((PAD_SIDE, PAD_SIDE), np.float32)) is None
    canvas = np.zeros((PAD_SIDE, PAD_SIDE), np.float32)
    canvas[40:180, 100:130] = 1.0  # a tall bar, off centre: 140 px high
    digit = reduce_pad(canvas)
    assert digit is not None and digit.shape == (16, 16)
    rows, cols = np.flatnonzero(digit.max(axis=1) > 0.5), np.flatnonzero(digit.max(axis=0) > 0.5)
    assert rows[0] == 1 and rows[-1] == 14 and len(rows) == DIGIT_EXTENT
    assert cols.mean() == pytest.approx(7.5, abs=0.5)  # centred across, whatever its place on the pad
    assert digit.sum() == pytest.approx(140 * 30 / (140 / DIGIT_EXTENT) ** 2, rel=0.02)  # area averaging
    moved = np.roll(canvas, (50, -60), axis=(0, 1))
    np.testing.assert_allclose(reduce_pad(moved), digit, atol=1e-6)


def test_pad_like_drawings_are_deterministic_and_look_drawn() -> None:
    data = default_digits()
    scans, labels = data.x_train[:30].reshape(-1, 16, 16), data.y_train[:30]
    x, y = pad_like_digits(scans, labels, 3, seed=5)
    again, _ = pad_like_digits(scans, labels, 3, seed=5)
    other, _ = pad_like_digits(scans, labels, 3, seed=6)
    np.testing.assert_array_equal(x, again)
    assert np.abs(x - other).mean() > 0.01
    assert x.shape == (90, 256) and x.dtype == np.float32 and list(y) == list(np.repeat(labels, 3))
    images = x.reshape(-1, 16, 16)
    # Pen strokes: solid ink in the middle of the line, most of the square dark, the ink's box 14 px tall or wide.
    assert (images.max(axis=(1, 2)) > 0.95).all()
    assert 0.1 < (images > 0.5).mean() < 0.4
    extent = [max(np.ptp(np.flatnonzero(im.max(axis=a) > 0.1)) + 1 for a in (0, 1)) for im in images]
    assert min(extent) >= DIGIT_EXTENT - 1 and max(extent) <= DIGIT_EXTENT + 2


def test_a_scans_skeleton_is_a_thin_connected_graph() -> None:
    data = default_digits()
    one = data.x_train[data.y_train == 1][0].reshape(16, 16)
    nodes, edges = scan_skeleton(one, 0.45)
    assert len(nodes) > 10 and len(edges) >= len(nodes) - 1
    assert np.ptp(nodes[:, 0]) > 2 * np.ptp(nodes[:, 1])  # a 1 is taller than wide
    assert (np.abs(nodes[edges[:, 0]] - nodes[edges[:, 1]]).max(axis=1) == 1).all()  # neighbours only


def test_the_drawn_set_has_five_styles_in_three_variants_per_digit() -> None:
    drawings = drawn_digits()
    assert len(drawings) == 150
    for digit in range(10):
        mine = [d for d in drawings if d.label == digit]
        assert len({d.style for d in mine}) == 5 and len({d.variant for d in mine}) == 3, digit
    for drawing in drawings:
        points = np.concatenate(drawing.strokes)
        assert points.min() >= 0.05 * PAD_SIDE and points.max() <= 0.95 * PAD_SIDE
        # as a mouse reports them: no two neighbours further apart than 9 px (6.7 px before stretching)
        assert max(np.linalg.norm(np.diff(s, axis=0), axis=1).max(initial=0) for s in drawing.strokes) < 9
    styles = {d.style for d in drawings}
    assert {"with a serif at the top", "one straight stroke", "crossed", "open top", "angular, Z-like"} <= styles
    x, y = drawn_test_set()
    assert x.shape == (150, 256) and np.bincount(y).tolist() == [15] * 10
    np.testing.assert_array_equal(x[0], strokes_to_digit(drawings[0].strokes).reshape(-1))


def test_a_bad_drawn_set_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "drawn.json"
    path.write_text(json.dumps({"variants": [{"name": "v", "slant": 0, "scale": 1, "stretch": 1, "dx": 0.5,
                                              "dy": 0}],
                                "digits": {"1": [{"style": "s", "strokes": [[[0.5, 0.1], [0.5, 0.9]]]}]}}))
    with pytest.raises(DatasetError, match="leaves the pad") as info:
        drawn_digits(path)
    assert str(path) in str(info.value)
    path.write_text('{"digits": {}}')
    with pytest.raises(DatasetError, match="not a drawn-digits file"):
        drawn_digits(path)


def _correction(label: object, image: object) -> str:
    return json.dumps({"format": "swapstream.digit-correction", "version": 1, "label": label, "predicted": None,
                       "model": "digits", "created": "2026-11-30T00:00:00Z", "image": image})


def test_corrections_are_read_and_bad_ones_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="holds no corrections"):
        read_corrections(tmp_path)
    image = np.zeros((16, 16))
    image[3:13, 7:9] = 1.0
    (tmp_path / "a.json").write_text(_correction(1, image.tolist()))
    (tmp_path / "b.json").write_text(_correction(7, (image * 0.5).tolist()))
    x, y = read_corrections(tmp_path)
    assert y.tolist() == [1, 7] and x.shape == (2, 256) and x[1].max() == 0.5
    for name, text, message in (("c.json", _correction(12, image.tolist()), "label must be a digit"),
                                ("c.json", _correction(1, [[0.0] * 15] * 16), "16 rows of 16"),
                                ("c.json", _correction(1, (image * 2).tolist()), "in \\[0,1\\]"),
                                ("c.json", "{not json", "is not a digit correction"),
                                ("c.json", json.dumps({"label": 1, "image": image.tolist()}), "format")):
        (tmp_path / name).write_text(text)
        with pytest.raises(DatasetError, match=message) as info:
            read_corrections(tmp_path)
        assert str(tmp_path / name) in str(info.value)


def test_init_must_be_a_digits_run_of_the_same_arch(tiny_digits_run: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="pass --arch mlp"):
        train_digits(DigitsTrainConfig(out=tmp_path / "x", arch="cnn", init=tiny_digits_run, epochs=1,
                                       pad_variants=0, progress=False))
    with pytest.raises(ValueError, match="--test-data goes with"):
        DigitsTrainConfig(out=tmp_path, data=tmp_path, test_data=tmp_path / "t")
    with pytest.raises(ValueError, match="--pad-variants"):
        DigitsTrainConfig(out=tmp_path, pad_variants=-1)
