"""The digit model's data and training: 16x16 grey images as 256-value vectors, 10 classes, cross-entropy.

Data: scikit-learn's 8x8 digits upsampled to 16x16 (default, with a stratified held-out split), or the USPS
files when given: `usps.h5` (groups train/test, each with datasets data (N,256) and target (N,)) or the
libsvm text format (`label index:value ...`, indices 1..256).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from swapstream.atomic import atomic_write_text
from training.checkpoint import capture_rng, checkpoint_path, save_checkpoint
from training.digits_model import CLASSES, IMAGE_SIDE, INPUTS, Arch, DigitNet
from training.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DigitData:
    """Train and test sets: x float32 (N,256) in [0,1], ink bright on dark; y int64 (N,) in 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def _check(x: np.ndarray, y: np.ndarray, where: str) -> None:
    if x.ndim != 2 or x.shape[1] != INPUTS:
        raise DatasetError(f"{where}: images must be N x {INPUTS} (16x16), got shape {x.shape}")
    if len(x) != len(y) or len(x) == 0:
        raise DatasetError(f"{where}: {len(x)} images but {len(y)} labels")
    if y.min() < 0 or y.max() >= CLASSES:
        raise DatasetError(f"{where}: labels must be 0..9, found {y.min()}..{y.max()}")


def normalise_images(x: np.ndarray) -> np.ndarray:
    """Scale to [0,1] from the data's own range and make the ink bright on a dark ground.

    USPS copies disagree on range ([-1,1] or [0,1] or [0,255]) and polarity; the background is most of every
    image, so a mean above one half means dark ink on a bright ground, which is inverted.
    """
    x = x.astype(np.float32)
    low, high = float(x.min()), float(x.max())
    if high - low < 1e-9:
        raise DatasetError("images are constant; nothing to learn")
    if low < 0.0 or high > 1.0:
        x = (x - low) / (high - low)
    if float(x.mean()) > 0.5:
        x = 1.0 - x
    return np.clip(x, 0.0, 1.0)


def default_digits(seed: int = 0, test_fraction: float = 0.25) -> DigitData:
    """scikit-learn's 8x8 digits, upsampled to 16x16, with a stratified held-out test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # 0 = background, 1 = ink
    big = np.stack([cv2.resize(img, (IMAGE_SIDE, IMAGE_SIDE), interpolation=cv2.INTER_LINEAR) for img in images])
    x = np.clip(big.reshape(len(big), INPUTS), 0.0, 1.0)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return DigitData(x_train, y_train, x_test, y_test, source="sklearn load_digits (8x8 -> 16x16)")


def read_usps_h5(path: Path) -> DigitData:
    """The common `usps.h5` layout: groups train and test, each with `data` (N,256) and `target` (N,)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            parts = {}
            for group in ("train", "test"):
                if group not in handle or "data" not in handle[group] or "target" not in handle[group]:
                    raise DatasetError(f"{path} lacks the group {group}/ with datasets data and target")
                parts[group] = (np.asarray(handle[group]["data"][:]), np.asarray(handle[group]["target"][:]))
    except OSError as exc:
        raise DatasetError(f"{path} is not a readable HDF5 file: {exc}") from exc
    x_train = parts["train"][0].reshape(len(parts["train"][0]), -1)
    x_test = parts["test"][0].reshape(len(parts["test"][0]), -1)
    y_train, y_test = parts["train"][1].astype(np.int64).ravel(), parts["test"][1].astype(np.int64).ravel()
    _check(x_train, y_train, f"{path} train")
    _check(x_test, y_test, f"{path} test")
    both = normalise_images(np.concatenate([x_train, x_test]))
    return DigitData(both[: len(x_train)], y_train, both[len(x_train):], y_test, source=str(path))


def read_libsvm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A libsvm text file (`label index:value ...`, 1-based indices up to 256) -> raw (x, y).

    Labels 1..10 (LIBSVM's USPS copy) become 0..9; labels 0..9 are kept.
    """
    rows: list[np.ndarray] = []
    labels: list[int] = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} cannot be read as a libsvm text file: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        row = np.zeros(INPUTS, np.float32)
        try:
            labels.append(int(float(parts[0])))
            for item in parts[1:]:
                index, value = item.split(":", 1)
                position = int(index) - 1
                if not 0 <= position < INPUTS:
                    raise ValueError(f"feature index {index} outside 1..{INPUTS}")
                row[position] = float(value)
        except ValueError as exc:
            raise DatasetError(f"{path} line {number} is not libsvm format: {exc}") from exc
        rows.append(row)
    if not rows:
        raise DatasetError(f"{path} holds no samples")
    y = np.asarray(labels, np.int64)
    if y.min() >= 1 and y.max() == 10:
        y = y - 1
    return np.stack(rows), y


def load_digit_data(data: Path | None, test_data: Path | None = None, seed: int = 0,
                    test_fraction: float = 0.25) -> DigitData:
    """The default digits, or USPS from `data` (.h5, or libsvm text with an optional separate test file)."""
    if data is None:
        return default_digits(seed, test_fraction)
    if not data.is_file():
        raise DatasetError(f"--data {data} does not exist")
    if data.suffix.lower() in (".h5", ".hdf5"):
        return read_usps_h5(data)
    x, y = read_libsvm(data)
    if test_data is not None:
        if not test_data.is_file():
            raise DatasetError(f"--test-data {test_data} does not exist")
        x_test, y_test = read_libsvm(test_data)
        _check(x, y, str(data))
        _check(x_test, y_test, str(test_data))
        both = normalise_images(np.concatenate([x, x_test]))
        return DigitData(both[: len(x)], y, both[len(x):], y_test, source=f"{data} + {test_data}")
    from sklearn.model_selection import train_test_split

    _check(x, y, str(data))
    x = normalise_images(x)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
    return DigitData(x_train, y_train, x_test, y_test, source=str(data))


@dataclass(frozen=True)
class DigitsTrainConfig:
    """Everything `swapstream train digits` needs, validated once."""

    out: Path
    arch: Arch = "mlp"
    data: Path | None = None
    test_data: Path | None = None
    epochs: int | None = None
    """None: 60 for the MLP, 30 for the CNN."""
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    test_fraction: float = 0.25
    jitter_px: float = 1.0
    """Random shift of training images, in pixels (0: off)."""
    jitter_deg: float = 0.0
    """Random rotation of training images, in degrees (0: off)."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.arch not in ("mlp", "cnn"):
            raise ValueError(f"--arch must be mlp or cnn, got {self.arch!r}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch < 1:
            raise ValueError(f"--batch must be at least 1, got {self.batch}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if not 0.05 <= self.test_fraction <= 0.5:
            raise ValueError(f"--test-fraction must be in [0.05, 0.5], got {self.test_fraction}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy for the checkpoint's train_config."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    @property
    def epoch_count(self) -> int:
        """Epochs to run: the flag, or the architecture's default."""
        if self.epochs is not None:
            return self.epochs
        return 60 if self.arch == "mlp" else 30


@dataclass(frozen=True)
class DigitsResult:
    """Test accuracy, the confusion matrix (rows: true class) and where the outputs went."""

    accuracy: float
    confusion: np.ndarray
    train_losses: list[float]
    test_losses: list[float]
    checkpoint: Path
    seconds: float


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """10x10 counts, rows = true digit, columns = predicted digit."""
    matrix = np.zeros((CLASSES, CLASSES), np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def _plots(result_dir: Path, confusion: np.ndarray, train_losses: list[float], test_losses: list[float],
           accuracy: float, arch: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(confusion, cmap="Blues")
    for (row, col), count in np.ndenumerate(confusion):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > confusion.max() / 2 else "black", fontsize=8)
    ax.set(xticks=range(CLASSES), yticks=range(CLASSES), xlabel="predicted", ylabel="true",
           title=f"{arch}: test accuracy {accuracy:.2%}")
    fig.tight_layout()
    fig.savefig(result_dir / "confusion.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(train_losses) + 1)
    ax.plot(epochs, train_losses, label="train")
    ax.plot(epochs, test_losses, label="test")
    ax.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title=f"{arch} loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(result_dir / "loss_curve.png", dpi=100)
    plt.close(fig)


def jitter_digits(x: torch.Tensor, generator: torch.Generator, max_shift_px: float, max_rotation_deg: float) -> torch.Tensor:
    """Shift each image by up to `max_shift_px` and rotate it by up to `max_rotation_deg` (training only)."""
    n = len(x)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * np.deg2rad(max_rotation_deg)
    # affine_grid works in [-1,1] units: one pixel is 2/16
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2.0 * max_shift_px / IMAGE_SIDE)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    theta[:, :, 2] = shift
    images = x.reshape(n, 1, IMAGE_SIDE, IMAGE_SIDE)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros").reshape(n, INPUTS)


def train_digits(config: DigitsTrainConfig) -> DigitsResult:
    """Train the digit model by mini-batch gradient descent (Adam) on cross-entropy; write checkpoint and plots."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    # these models are tiny: one thread beats synchronising several on every small matmul
    torch.set_num_threads(1)
    try:
        return _train_digits(config, started)
    finally:
        torch.set_num_threads(threads)


def _train_digits(config: DigitsTrainConfig, started: float) -> DigitsResult:
    data = load_digit_data(config.data, config.test_data, config.seed, config.test_fraction)
    log.info("digits: %d train / %d test images from %s", len(data.x_train), len(data.x_test), data.source)
    torch.manual_seed(config.seed)
    model = DigitNet(arch=config.arch)
    log.info("digit model %s: %d parameters", config.arch, model.parameter_count())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epoch_count)
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    generator = torch.Generator().manual_seed(config.seed)
    train_losses: list[float] = []
    test_losses: list[float] = []
    bar = tqdm(range(config.epoch_count), desc=f"train digits ({config.arch})", unit="epoch", disable=not config.progress)
    for _ in bar:
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch):
            idx = order[start : start + config.batch]
            inputs = x_train[idx]
            if config.jitter_px > 0 or config.jitter_deg > 0:
                inputs = jitter_digits(inputs, generator, config.jitter_px, config.jitter_deg)
            loss = F.cross_entropy(model(inputs), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        scheduler.step()
        train_losses.append(total / len(x_train))
        model.eval()
        with torch.no_grad():
            test_losses.append(float(F.cross_entropy(model(x_test), y_test)))
        bar.set_postfix(train=f"{train_losses[-1]:.4f}", test=f"{test_losses[-1]:.4f}")
    model.eval()
    with torch.no_grad():
        predicted = model(x_test).argmax(dim=1).numpy()
    accuracy = float((predicted == data.y_test).mean())
    confusion = confusion_matrix(data.y_test, predicted)
    config.out.mkdir(parents=True, exist_ok=True)
    ckpt = save_checkpoint(checkpoint_path(config.out), kind="digits", model=model, model_config=model.config,
                           step=config.epoch_count, train_config=config.to_json(), optimizer=optimizer, rng=capture_rng())
    _plots(config.out, confusion, train_losses, test_losses, accuracy, config.arch)
    atomic_write_text(config.out / "metrics.json", json.dumps({
        "arch": config.arch, "test_accuracy": accuracy, "n_train": len(data.x_train), "n_test": len(data.x_test),
        "source": data.source, "confusion": confusion.tolist(), "train_loss": train_losses, "test_loss": test_losses,
    }, indent=2))
    seconds = time.perf_counter() - started
    log.info("digits %s: test accuracy %.2f%% in %.1f s", config.arch, 100 * accuracy, seconds)
    return DigitsResult(accuracy, confusion, train_losses, test_losses, ckpt, seconds)
