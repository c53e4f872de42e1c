"""The digit model: accuracy on the scans and the drawn set, USPS file formats, outputs, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from swapstream.cli import main as swapstream_main
from training.checkpoint import load_run
from training.digits import (
    DigitsTrainConfig,
    default_digits,
    load_digit_data,
    read_libsvm,
    train_digits,
)
from training.errors import DatasetError


def _accuracy_from_checkpoint(run_dir: Path) -> float:
    """Re-evaluate the saved model on the held-out split, independently of the trainer's own figure."""
    run = load_run(run_dir)
    data = default_digits()
    with torch.no_grad():
        predicted = run.model(torch.from_numpy(data.x_test)).argmax(dim=1).numpy()
    return float((predicted == data.y_test).mean())


def test_default_data_is_16x16_ink_bright_and_stratified() -> None:
    data = default_digits()
    assert data.x_train.shape[1] == 256 and data.x_test.shape[1] == 256
    assert data.x_train.dtype == np.float32 and 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert data.x_train.mean() < 0.4, "background dark, ink bright"
    train_share = np.bincount(data.y_train, minlength=10) / len(data.y_train)
    test_share = np.bincount(data.y_test, minlength=10) / len(data.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    assert 0.2 < len(data.x_test) / (len(data.x_test) + len(data.x_train)) < 0.3


def test_mlp_reaches_95_percent_on_the_scans(tiny_digits_run: Path) -> None:
    metrics = json.loads((tiny_digits_run / "metrics.json").read_text())
    accuracy = _accuracy_from_checkpoint(tiny_digits_run)
    print(f"MLP test accuracy {accuracy:.2%} (trainer reported {metrics['test_accuracy']:.2%})")
    assert accuracy == pytest.approx(metrics["test_accuracy"])
    assert accuracy >= 0.95
    assert load_run(tiny_digits_run).kind == "digits"
    for plot in ("confusion.png", "loss_curve.png"):
        image = cv2.imread(str(tiny_digits_run / plot))
        assert image is not None and image.shape[0] > 200 and image.std() > 10, plot
    confusion = np.array(metrics["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == metrics["n_test"]
    # the distorted pad-like drawings keep the training loss higher than the scans alone did (/5 there)
    assert metrics["train_loss"][-1] < metrics["train_loss"][0] / 3
    drawn = np.array(metrics["drawn_confusion"])
    assert drawn.shape == (10, 10) and drawn.sum() == metrics["n_drawn"] == 150


@pytest.mark.slow
def test_cnn_recipe_reaches_97_percent_on_scans_and_drawings(tmp_path: Path) -> None:
    """The bundled model's recipe (docs/training.md): the CNN on the scans and 8 pad-like drawings of each."""
    result = train_digits(DigitsTrainConfig(out=tmp_path, arch="cnn", progress=False))
    accuracy = _accuracy_from_checkpoint(tmp_path)
    print(f"CNN: scans {accuracy:.2%}, drawn {result.drawn.accuracy:.2%} in {result.seconds:.1f} s")
    assert accuracy == pytest.approx(result.scans.accuracy)
    assert accuracy >= 0.97 and result.drawn.accuracy >= 0.97
    model = load_run(tmp_path).model
    assert model(torch.zeros(3, 256)).shape == (3, 10)


def _usps_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """USPS-style data from the default digits: values in [-1, 1], dark ink on a bright ground."""
    data = default_digits(seed)
    x = np.concatenate([data.x_train, data.x_test])[:n]
    y = np.concatenate([data.y_train, data.y_test])[:n]
    return 1.0 - 2.0 * x, y


def test_usps_h5_is_read_and_normalised(tmp_path: Path) -> None:
    x, y = _usps_like(600, 0)
    path = tmp_path / "usps.h5"
    with h5py.File(path, "w") as handle:
        for group, sl in (("train", slice(0, 500)), ("test", slice(500, 600))):
            handle.create_dataset(f"{group}/data", data=x[sl])
            handle.create_dataset(f"{group}/target", data=y[sl])
    data = load_digit_data(path)
    assert len(data.x_train) == 500 and len(data.x_test) == 100
    # back to [0,1] with bright ink: exactly the source images
    np.testing.assert_allclose(data.x_train, (1.0 - x[:500]) / 2.0, atol=1e-5)
    np.testing.assert_array_equal(data.y_test, y[500:])


def test_libsvm_text_is_read_with_labels_1_to_10(tmp_path: Path) -> None:
    x, y = _usps_like(300, 1)
    path = tmp_path / "usps"
    lines = []
    for row, label in zip(x, y):
        features = " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(row) if v != 0)
        lines.append(f"{label + 1} {features}")
    path.write_text("\n".join(lines) + "\n")
    raw_x, raw_y = read_libsvm(path)
    np.testing.assert_array_equal(raw_y, y)
    np.testing.assert_allclose(raw_x, x, atol=1e-5)
    data = load_digit_data(path, seed=0)
    assert len(data.x_train) + len(data.x_test) == 300
    assert data.x_train.mean() < 0.4


def test_bad_digit_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as info:
        load_digit_data(tmp_path / "usps.h5")
    assert "usps.h5" in str(info.value)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1:0.5 2:0.25\n3 oops\n")
    with pytest.raises(DatasetError, match="line 2") as info:
        load_digit_data(bad)
    assert str(bad) in str(info.value)
    h5 = tmp_path / "broken.h5"
    with h5py.File(h5, "w") as handle:
        handle.create_dataset("train/data", data=np.zeros((4, 256)))
        handle.create_dataset("train/target", data=np.zeros(4))
    with pytest.raises(DatasetError, match="test/") as info:
        load_digit_data(h5)
    assert str(h5) in str(info.value)


def test_cli_trains_digits_and_reports_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert swapstream_main(["train", "digits", "--out", str(out), "--epochs", "3", "--pad-variants", "1",
                            "--no-progress"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"test accuracy, scans (held out): {metrics['test_accuracy']:.2%} of 450" in printed
    assert f"test accuracy, drawn on the pad (training/data/drawn_digits.json): {metrics['drawn_accuracy']:.2%} " \
           f"of 150" in printed
    assert str(out / "confusion.png") in printed
    assert np.array(metrics["drawn_confusion"]).sum() == 150 and metrics["n_train"] == 2 * 1347
    assert (out / "checkpoint.safetensors").is_file() and (out / "loss_curve.png").is_file()
    assert swapstream_main(["train", "digits", "--out", str(out), "--data", str(tmp_path / "none.h5")]) == 1
    assert str(tmp_path / "none.h5") in capsys.readouterr().err
