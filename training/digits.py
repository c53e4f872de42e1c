"""The digit model's data and training: 16x16 grey images as 256-value vectors, 10 classes, cross-entropy.

Data: scikit-learn's 8x8 digits upsampled to 16x16 (default, with a stratified held-out split), or the USPS
files when given: `usps.h5` (groups train/test, each with datasets data (N,256) and target (N,)) or the
libsvm text format (`label index:value ...`, indices 1..256). To the training scans come pad-like drawings
rendered from their skeletons (training/pad_digits.py) and, with `--data FOLDER`, the corrections the server
stored. Every run is scored on the scans' held-out part and on the drawn set (training/drawn_digits.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


CORRECTION_FORMAT = "swapstream.digit-correction"


def read_corrections(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The corrected samples `swapstream serve --digits-corrections DIR` stored: x float32 (N,256), y int64 (N,).

    One JSON file per sample (docs/CONTRACTS.md): {"format": "swapstream.digit-correction", "version": 1,
    "label": 0..9, "image": 16 rows of 16 numbers in [0,1], ink bright, ...}. A file that does not fit is named.
    """
    images: list[np.ndarray] = []
    labels: list[int] = []
    for path in sorted(folder.glob("*.json")):
        try:
            sample = json.loads(path.read_text())
            if not isinstance(sample, dict) or sample.get("format") != CORRECTION_FORMAT:
                raise ValueError(f"format is not {CORRECTION_FORMAT!r}")
            label = sample["label"]
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < CLASSES:
                raise ValueError(f"label must be a digit 0..9, got {label!r}")
            image = np.asarray(sample["image"], np.float32)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path} is not a digit correction: {exc}") from exc
        if image.shape != (IMAGE_SIDE, IMAGE_SIDE) or not np.isfinite(image).all() \
                or image.min() < 0 or image.max() > 1:
            raise DatasetError(f"{path}: the image must be 16 rows of 16 numbers in [0,1], got shape {image.shape}")
        images.append(image.reshape(INPUTS))
        labels.append(label)
    if not images:
        raise DatasetError(f"--data {folder} holds no corrections (*.json written by --digits-corrections)")
    return np.stack(images), np.asarray(labels, np.int64)


@dataclass(frozen=True)
class DigitsTrainConfig:
    """Everything `swapstream train digits` needs, validated once."""

    out: Path
    arch: Arch = "mlp"
    data: Path | None = None
    """None: scikit-learn's digits; a USPS file; or a folder of corrections added to scikit-learn's digits."""
    test_data: Path | None = None
    init: Path | None = None
    """A digits run to start from (fine-tuning); None: fresh weights."""
    epochs: int | None = None
    """None: 30 for the MLP, 20 for the CNN (10 for either when fine-tuning from --init)."""
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    test_fraction: float = 0.25
    pad_variants: int = 8
    """Pad-like drawings rendered from each training scan's skeleton (0: train on the scans alone)."""
    correction_repeat: int = 20
    """How many times each correction is repeated in the training set, so a few samples weigh enough."""
    jitter_px: float = 1.0
    """Random shift of training images, in pixels (0: off)."""
    jitter_deg: float = 0.0
    """Random rotation of training images, in degrees (0: off)."""
    drawn: Path | None = None
    """The drawn test set's file; None: the package's training/data/drawn_digits.json."""
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
        if not 0 <= self.pad_variants <= 100:
            raise ValueError(f"--pad-variants must be in 0..100, got {self.pad_variants}")
        if not 1 <= self.correction_repeat <= 1000:
            raise ValueError(f"--correction-repeat must be in 1..1000, got {self.correction_repeat}")
        if self.test_data is not None and (self.data is None or self.data.is_dir()):
            raise ValueError("--test-data goes with a libsvm --data file")

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy for the checkpoint's train_config."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    @property
    def epoch_count(self) -> int:
        """Epochs to run: the flag, or the default for the architecture (fewer when fine-tuning)."""
        if self.epochs is not None:
            return self.epochs
        if self.init is not None:
            return 10
        return 30 if self.arch == "mlp" else 20


@dataclass(frozen=True)
class TestScore:
    """A model's accuracy and confusion matrix (rows: true digit) on one test set."""

    name: str
    accuracy: float
    confusion: np.ndarray

    @property
    def count(self) -> int:
        """How many test images."""
        return int(self.confusion.sum())


@dataclass(frozen=True)
class DigitsResult:
    """Accuracy on the scans' held-out quarter and on the drawn set, losses, and where the outputs went."""

    scans: TestScore
    drawn: TestScore
    corrections_right: tuple[int, int] | None
    """(read right, total) over the --data corrections after training; None without corrections."""
    train_losses: list[float]
    test_losses: list[float]
    checkpoint: Path
    seconds: float

    @property
    def accuracy(self) -> float:
        """Accuracy on the scans' held-out quarter (the figure earlier versions reported)."""
        return self.scans.accuracy


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """10x10 counts, rows = true digit, columns = predicted digit."""
    matrix = np.zeros((CLASSES, CLASSES), np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def _plots(result_dir: Path, scores: list[TestScore], train_losses: list[float], test_losses: list[float],
           arch: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scores), figsize=(5.2 * len(scores), 5))
    for ax, score in zip(np.atleast_1d(axes), scores):
        confusion = score.confusion
        ax.imshow(confusion, cmap="Blues")
        for (row, col), count in np.ndenumerate(confusion):
            if count:
                ax.text(col, row, str(count), ha="center", va="center",
                        color="white" if count > confusion.max() / 2 else "black", fontsize=8)
        ax.set(xticks=range(CLASSES), yticks=range(CLASSES), xlabel="predicted", ylabel="true",
               title=f"{score.name}\n{arch}: {score.accuracy:.1%} of {score.count}")
    fig.tight_layout()
    fig.savefig(result_dir / "confusion.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(train_losses) + 1)
    ax.plot(epochs, train_losses, label="train")
    ax.plot(epochs, test_losses, label="test (scans)")
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


@dataclass(frozen=True)
class _TrainingSet:
    scans: DigitData
    x: np.ndarray
    y: np.ndarray
    corrections: tuple[np.ndarray, np.ndarray] | None


def _training_set(config: DigitsTrainConfig) -> _TrainingSet:
    """The scans (train and held-out test), plus pad-like drawings of the training scans and any corrections."""
    corrections = None
    if config.data is not None and config.data.is_dir():
        scans = default_digits(config.seed, config.test_fraction)
        corrections = read_corrections(config.data)
    else:
        scans = load_digit_data(config.data, config.test_data, config.seed, config.test_fraction)
    parts_x, parts_y = [scans.x_train], [scans.y_train]
    if config.pad_variants:
        from training.pad_digits import pad_like_digits

        pad_x, pad_y = pad_like_digits(scans.x_train.reshape(-1, IMAGE_SIDE, IMAGE_SIDE), scans.y_train,
                                       config.pad_variants, seed=config.seed)
        parts_x.append(pad_x)
        parts_y.append(pad_y)
    if corrections is not None:
        parts_x.append(np.repeat(corrections[0], config.correction_repeat, axis=0))
        parts_y.append(np.repeat(corrections[1], config.correction_repeat))
    log.info("digits: %d scans, %d pad-like drawings, %d corrections x%d to train on; %d scans held out; from %s",
             len(scans.x_train), config.pad_variants * len(scans.x_train),
             0 if corrections is None else len(corrections[1]), config.correction_repeat, len(scans.x_test),
             scans.source)
    return _TrainingSet(scans, np.concatenate(parts_x), np.concatenate(parts_y), corrections)


def _initial_model(config: DigitsTrainConfig) -> DigitNet:
    if config.init is None:
        return DigitNet(arch=config.arch)
    from training.checkpoint import load_run

    run = load_run(config.init)
    if run.kind != "digits" or not isinstance(run.model, DigitNet):
        raise DatasetError(f"--init {config.init} holds a {run.kind} model, not a digits model")
    if run.model.arch != config.arch:
        raise DatasetError(f"--init {config.init} holds a {run.model.arch} model; pass --arch {run.model.arch}")
    log.info("fine-tuning the %s model of %s (step %d)", run.model.arch, config.init, run.step)
    return run.model


def _predict(model: DigitNet, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, np.float32))).argmax(dim=1).numpy()


def _score(name: str, model: DigitNet, x: np.ndarray, y: np.ndarray) -> TestScore:
    predicted = _predict(model, x)
    return TestScore(name, float((predicted == y).mean()), confusion_matrix(y, predicted))


def _train_digits(config: DigitsTrainConfig, started: float) -> DigitsResult:
    from training.drawn_digits import drawn_test_set

    data = _training_set(config)
    drawn_x, drawn_y = drawn_test_set(config.drawn)
    torch.manual_seed(config.seed)
    model = _initial_model(config)
    log.info("digit model %s: %d parameters", config.arch, model.parameter_count())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epoch_count)
    x_train, y_train = torch.from_numpy(data.x), torch.from_numpy(data.y)
    x_test, y_test = torch.from_numpy(data.scans.x_test), torch.from_numpy(data.scans.y_test)
    generator = torch.Generator().manual_seed(config.seed)
    train_losses: list[float] = []
    test_losses: list[float] = []
    bar = tqdm(range(config.epoch_count), desc=f"train digits ({config.arch})", unit="epoch",
               disable=None if config.progress else True)  # None: on a terminal only
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
    scans = _score("scans, held out", model, data.scans.x_test, data.scans.y_test)
    drawn = _score("drawn on the pad", model, drawn_x, drawn_y)
    corrections_right = None
    if data.corrections is not None:
        right = int((_predict(model, data.corrections[0]) == data.corrections[1]).sum())
        corrections_right = (right, len(data.corrections[1]))
    config.out.mkdir(parents=True, exist_ok=True)
    ckpt = save_checkpoint(checkpoint_path(config.out), kind="digits", model=model, model_config=model.config,
                           step=config.epoch_count, train_config=config.to_json(), optimizer=optimizer, rng=capture_rng())
    _plots(config.out, [scans, drawn], train_losses, test_losses, config.arch)
    seconds = time.perf_counter() - started
    atomic_write_text(config.out / "metrics.json", json.dumps({
        "arch": config.arch, "test_accuracy": scans.accuracy, "n_train": len(data.x), "n_test": scans.count,
        "drawn_accuracy": drawn.accuracy, "n_drawn": drawn.count, "source": data.scans.source,
        "confusion": scans.confusion.tolist(), "drawn_confusion": drawn.confusion.tolist(),
        "corrections_right": corrections_right, "train_loss": train_losses, "test_loss": test_losses,
        "seconds": seconds,
    }, indent=2))
    log.info("digits %s: scans %.2f%%, drawn %.2f%% in %.1f s", config.arch, 100 * scans.accuracy,
             100 * drawn.accuracy, seconds)
    return DigitsResult(scans, drawn, corrections_right, train_losses, test_losses, ckpt, seconds)
