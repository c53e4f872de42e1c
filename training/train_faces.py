"""The face-swap training loop: both identities every step, Adam, AMP on CUDA, atomic checkpoints,
resume, preview grids and a losses CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch
from tqdm import tqdm

from faces.media import write_image
from swapstream.atomic import atomic_path, atomic_write_text
from training.checkpoint import (
    Checkpoint,
    capture_rng,
    checkpoint_path,
    read_checkpoint,
    restore_model,
    restore_optimizer,
    restore_rng,
    save_checkpoint,
)
from training.errors import CheckpointError, TrainingError
from training.expression_balance import balance_expressions
from training.faceset import BatchStream, FaceSet, SideBatch, make_side_batch
from training.losses import LossWeights, code_gap, face_losses, masked_dssim, masked_l1
from training.swap_model import SwapAutoencoder, describe_parameters
from training.warp import AugmentConfig

log = logging.getLogger(__name__)

DeviceChoice = Literal["auto", "cpu", "cuda"]
LOSSES_CSV = "losses.csv"
PREVIEW_NAME = "preview.png"
EVAL_CSV = "eval.csv"
EVAL_COLUMNS = ["step", "recon_l1_a", "recon_l1_b", "recon_dssim_a", "recon_dssim_b", "recon"]
PREVIEW_ROWS = ("A", "A->A", "A->B", "B", "B->B", "B->A")
_LOSS_COLUMNS = ["step", "loss_a", "loss_b", "l1_a", "l1_b", "dssim_a", "dssim_b", "mask_a", "mask_b", "code_gap",
                 "images_per_s"]


@dataclass(frozen=True)
class ModelShape:
    """The swap model's size (the checkpoint's model_config, less face_size)."""

    encoder_channels: int = 32
    encoder_depth: int | None = None
    """Stride-2 convolutions in the encoder; None: down to 4x4 (4 at 64 px, 5 at 128 px)."""
    bottleneck: int = 256
    code_channels: int = 128
    decoder_channels: int = 128
    residual_blocks: int = 1

    def model_config(self, face_size: int) -> dict[str, Any]:
        """Constructor arguments of SwapAutoencoder for `face_size`."""
        depth = self.encoder_depth if self.encoder_depth is not None else int(np.log2(face_size // 4))
        return {
            "face_size": face_size,
            "encoder_channels": self.encoder_channels,
            "encoder_depth": depth,
            "bottleneck": self.bottleneck,
            "code_channels": self.code_channels,
            "decoder_channels": self.decoder_channels,
            "residual_blocks": self.residual_blocks,
        }


@dataclass(frozen=True)
class FaceTrainConfig:
    """Everything `swapstream train faces` needs, validated once."""

    faces_a: Path
    faces_b: Path
    out: Path
    size: int = 64
    steps: int = 5000
    batch: int = 16
    lr: float = 5e-4
    lr_final: float = 1.0
    """The learning rate falls along a cosine to lr * lr_final at the last step (default 1.0: constant)."""
    resume: bool = False
    device: DeviceChoice = "auto"
    preview_every: int = 500
    checkpoint_every: int = 500
    eval_every: int = 0
    """Steps between reconstruction checks on unwarped faces (eval.csv); 0: at every checkpoint."""
    workers: int = 2
    seed: int = 0
    max_minutes: float = 0.0
    """Stop (with a checkpoint) after this much training time; 0: run all --steps."""
    threads: int = 0
    """torch CPU threads; 0 keeps torch's default (one per core). On a busy machine 1 can be much faster."""
    shape: ModelShape | None = field(default_factory=ModelShape)
    """The model's size; None takes the base checkpoint's (needs `base`)."""
    base: Path | None = None
    """Start from this checkpoint's weights (shared encoder + both decoders), not from random ones (--base)."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    balance_eyes: float = 0.0
    """Draw faces with rare eye openings (blinks) more often: 0 uniform, 1 every eye-opening cell equally."""
    balance_mouth: float = 0.0
    """The same for the mouth opening (expression_balance)."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.size not in (64, 128, 256):
            raise ValueError(f"--size must be 64, 128 or 256, got {self.size}")
        for flag, value in (("--steps", self.steps), ("--batch", self.batch), ("--preview-every", self.preview_every),
                            ("--checkpoint-every", self.checkpoint_every), ("--workers", self.workers)):
            if value < 1:
                raise ValueError(f"{flag} must be at least 1, got {value}")
        if self.max_minutes < 0:
            raise ValueError(f"--max-minutes must be >= 0, got {self.max_minutes}")
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {self.threads}")
        if self.eval_every < 0:
            raise ValueError(f"--eval-every must be >= 0, got {self.eval_every}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if not 0 < self.lr_final <= 1:
            raise ValueError(f"--lr-final must be in (0, 1], got {self.lr_final}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but torch sees no CUDA GPU")
        for flag, value in (("--balance-eyes", self.balance_eyes), ("--balance-mouth", self.balance_mouth)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{flag} must be in [0, 1], got {value}")
        if self.shape is None and self.base is None:
            raise ValueError("the model shape comes from --base, but no --base was given")
        if self.base is not None and not self.base.is_file():
            raise ValueError(f"--base {self.base}: no such checkpoint file")

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy for the checkpoint's train_config."""
        def convert(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            return value

        return convert(dataclasses.asdict(self))


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or interrupted) run reached."""

    step: int
    checkpoint: Path
    interrupted: bool
    stop_signal: int | None
    images_per_s: float
    last_losses: dict[str, float]


def learning_rate(config: FaceTrainConfig, step: int) -> float:
    """Cosine decay from lr to lr * lr_final over --steps; a function of the step, so resume needs no state."""
    progress = min(step / config.steps, 1.0)
    return config.lr * (config.lr_final + (1 - config.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))


def resolve_device(choice: DeviceChoice) -> torch.device:
    """`auto` picks CUDA when torch sees a GPU."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


class StopFlag:
    """Set by SIGINT/SIGTERM so the loop can write a checkpoint and stop cleanly."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    @property
    def is_set(self) -> bool:
        return self.signal is not None


@contextmanager
def catch_stop_signals(flag: StopFlag) -> Iterator[None]:
    """Route SIGINT and SIGTERM to `flag` while training (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, flag) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def autocast_for(device: torch.device) -> tuple[Callable[[], Any], torch.amp.GradScaler | None]:
    """AMP on CUDA (bf16 where supported, else fp16 with a grad scaler); plain fp32 elsewhere."""
    if device.type != "cuda":
        return nullcontext, None
    if torch.cuda.is_bf16_supported():
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
    return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")


def training_step(
    model: SwapAutoencoder,
    optimizer: torch.optim.Optimizer,
    side_a: SideBatch,
    side_b: SideBatch,
    weights: LossWeights,
    autocast: Callable[[], Any] = nullcontext,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """One optimiser step on both identities: one shared encoder pass, each half through its own decoder.

    Returns each side's loss terms and the gap between A's and B's mean bottleneck codes (losses.code_gap), which
    is measured on every step and trained on where `weights.code_align` > 0.
    """
    batch = side_a.input.shape[0]
    with autocast():
        bottleneck = model.encoder.bottleneck(torch.cat([side_a.input, side_b.input]))
        code = model.encoder.expand(bottleneck)
        rgb_a, mask_a = model.decode(code[:batch], "a")
        rgb_b, mask_b = model.decode(code[batch:], "b")
    terms_a = face_losses(rgb_a, mask_a, side_a.target, side_a.mask, side_a.features, weights)
    terms_b = face_losses(rgb_b, mask_b, side_b.target, side_b.mask, side_b.features, weights)
    gap = code_gap(bottleneck[:batch], bottleneck[batch:])
    loss = terms_a["total"] + terms_b["total"]
    if weights.code_align > 0:
        loss = loss + weights.code_align * gap
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return terms_a, terms_b, gap.detach()


def _to_device(side: SideBatch, device: torch.device) -> SideBatch:
    return SideBatch(*(t.to(device, non_blocking=True) for t in (side.input, side.target, side.mask, side.features)))


def _to_uint8_rows(images: torch.Tensor) -> np.ndarray:
    array = images.detach().float().clamp(0, 1).cpu().numpy().transpose(0, 2, 3, 1)
    return np.concatenate(list((array * 255 + 0.5).astype(np.uint8)), axis=1)


@torch.no_grad()
def render_preview(model: SwapAutoencoder, faces_a: torch.Tensor, faces_b: torch.Tensor) -> np.ndarray:
    """The preview grid (RGB uint8): rows A, A->A, A->B, B, B->B, B->A; one column per face."""
    was_training = model.training
    model.eval()
    code_a, code_b = model.encode(faces_a), model.encode(faces_b)
    rows = [faces_a, model.decode(code_a, "a")[0], model.decode(code_a, "b")[0],
            faces_b, model.decode(code_b, "b")[0], model.decode(code_b, "a")[0]]
    model.train(was_training)
    return np.concatenate([_to_uint8_rows(row) for row in rows], axis=0)


@torch.no_grad()
def reconstruction_losses(model: SwapAutoencoder, side: SideBatch, name: Literal["a", "b"]) -> tuple[float, float]:
    """(masked L1, masked DSSIM) of reconstructing unwarped faces with their own decoder: the run's progress."""
    was_training = model.training
    model.eval()
    rgb, _ = model.decode(model.encode(side.input), name)
    model.train(was_training)
    rgb = rgb.float()
    return float(masked_l1(rgb, side.target, side.mask)), float(masked_dssim(rgb, side.target, side.mask))


class _CsvLog:
    """Append-only CSV; on resume, rows past the checkpoint's step (written after it) are dropped."""

    def __init__(self, path: Path, columns: list[str], keep_until: int | None) -> None:
        self.path, self.columns = path, columns
        rows: list[dict[str, str]] = []
        if keep_until is not None and path.is_file():
            with path.open(newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= keep_until]
        # Replaced, not rewritten in place: a reader of the old file (a plot, tail -f) never sees it cut short.
        with atomic_path(path) as fresh, fresh.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.columns).writerow(row)


def _tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def read_base(path: Path, size: int, shape: ModelShape | None) -> Checkpoint:
    """The base checkpoint's weights, checked to fit: a swap model for `size` px faces of `shape` (None: any
    shape); CheckpointError naming the file and the flags that differ."""
    base = read_checkpoint(path, expected_kind="swap")
    if base.model_config.get("face_size") != size:
        raise CheckpointError(f"--base {path} is for {base.model_config.get('face_size')} px faces, not --size {size}")
    if shape is not None:
        wanted = shape.model_config(size)
        differ = sorted(key for key in set(wanted) | set(base.model_config)
                        if wanted.get(key) != base.model_config.get(key))
        if differ:
            flags = ", ".join(f"--{key.replace('_', '-')} {base.model_config.get(key)} (not {wanted.get(key)})"
                              for key in differ)
            raise CheckpointError(f"--base {path} has another model shape: {flags}; give those flags, or no shape "
                                  "flags at all to take the base's shape")
    return base


def sampling_probabilities(faces: FaceSet, name: str, config: FaceTrainConfig) -> np.ndarray | None:
    """How often each face of one side is drawn (None: uniformly), logged with what it does to the rare faces."""
    balance = balance_expressions([record.landmarks for record in faces.records], config.balance_eyes,
                                  config.balance_mouth)
    if balance is None:
        if config.balance_eyes or config.balance_mouth:
            log.warning("face set %s: too few faces with a stored mesh to balance expressions; drawing uniformly",
                        name)
        return None
    (eyes_before, eyes_after), (mouth_before, mouth_after) = balance.closed_eye_share, balance.closed_mouth_share
    log.info("face set %s, expression balance: draws with the eyes closest to shut %.0f%% -> %.0f%%, "
             "with the mouth closest to closed %.0f%% -> %.0f%%", name, 100 * eyes_before, 100 * eyes_after,
             100 * mouth_before, 100 * mouth_after)
    return balance.probabilities


def train_faces(config: FaceTrainConfig) -> TrainResult:
    """Train (or resume) a swap model on two face sets; returns where it stopped."""
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train_faces(config)
    finally:
        torch.set_num_threads(threads)


def _train_faces(config: FaceTrainConfig) -> TrainResult:
    base = None
    if config.base is not None and not config.resume:
        base = read_base(config.base, config.size, config.shape)
    faces_a = FaceSet(config.faces_a, config.size)
    faces_b = FaceSet(config.faces_b, config.size)
    log.info("face sets: A %d faces (%s), B %d faces (%s)", len(faces_a), config.faces_a, len(faces_b), config.faces_b)
    device = resolve_device(config.device)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = checkpoint_path(out)
    for stale in out.glob(f".{ckpt_path.name}.*.tmp"):  # left by a run killed while writing
        log.info("removing unfinished checkpoint write %s", stale)
        stale.unlink(missing_ok=True)

    torch.manual_seed(config.seed)
    model_config: dict[str, Any] | None = None
    if base is not None:
        model_config = base.model_config
    elif config.shape is not None:
        model_config = config.shape.model_config(config.size)
    start_step = 0
    checkpoint = None
    if config.resume:
        if not ckpt_path.exists():
            raise CheckpointError(f"--resume: checkpoint {ckpt_path} does not exist")
        checkpoint = read_checkpoint(ckpt_path, expected_kind="swap")
        if checkpoint.model_config.get("face_size") != config.size:
            raise CheckpointError(
                f"checkpoint {ckpt_path} is for {checkpoint.model_config.get('face_size')} px faces, not --size {config.size}"
            )
        if model_config is not None and checkpoint.model_config != model_config:
            log.warning("--resume: using the checkpoint's model shape %s; the shape flags given are ignored",
                        checkpoint.model_config)
        model_config = checkpoint.model_config
        start_step = checkpoint.step
    elif ckpt_path.exists():
        raise TrainingError(f"{ckpt_path} already exists; pass --resume to continue it or choose another --out")
    if model_config is None:  # only --resume without shape flags gets here without a checkpoint to read
        raise TrainingError("no model shape: give the shape flags or --base")

    model = SwapAutoencoder(**model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.5, 0.999))
    if base is not None:
        restore_model(base, model)
        log.info("starting from the weights of %s (step %d of its run)", base.path, base.step)
    elif config.base is not None:
        log.info("--resume: the checkpoint already holds what --base %s started from; --base is not read again",
                 config.base)
    if checkpoint is not None:
        restore_model(checkpoint, model)
        restore_optimizer(checkpoint, optimizer)
        restore_rng(checkpoint.rng)
        log.info("resumed %s at step %d", ckpt_path, start_step)
    model.to(device).train()
    # optimiser state follows the parameters' device
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)
    log.info("swap model %s: %s", model_config, describe_parameters(model))
    atomic_write_text(out / "model_config.json", json.dumps(model_config, indent=2))

    autocast, scaler = autocast_for(device)
    keep = start_step if config.resume else None
    loss_log = _CsvLog(out / LOSSES_CSV, _LOSS_COLUMNS, keep)
    eval_log = _CsvLog(out / EVAL_CSV, EVAL_COLUMNS, keep)
    tensorboard = _tensorboard_writer(out)
    previews_dir = out / "previews"
    previews_dir.mkdir(exist_ok=True)

    # fixed, unwarped faces for previews and the reconstruction measure
    eval_rng = np.random.default_rng([config.seed, 0xE7A1])
    n_eval = min(8, len(faces_a), len(faces_b))
    eval_a = _to_device(make_side_batch(faces_a, eval_rng.choice(len(faces_a), n_eval, replace=False), eval_rng, None), device)
    eval_b = _to_device(make_side_batch(faces_b, eval_rng.choice(len(faces_b), n_eval, replace=False), eval_rng, None), device)
    eval_every = config.eval_every or config.checkpoint_every

    def evaluate(step: int) -> None:
        l1_a, dssim_a = reconstruction_losses(model, eval_a, "a")
        l1_b, dssim_b = reconstruction_losses(model, eval_b, "b")
        row = {"step": step, "recon_l1_a": l1_a, "recon_l1_b": l1_b, "recon_dssim_a": dssim_a,
               "recon_dssim_b": dssim_b, "recon": (l1_a + l1_b + dssim_a + dssim_b) / 2}
        eval_log.write({k: (f"{v:.6f}" if k != "step" else v) for k, v in row.items()})
        if tensorboard is not None:
            tensorboard.add_scalars("eval", {k: v for k, v in row.items() if k != "step"}, step)

    def write_checkpoint(step: int) -> None:
        save_checkpoint(ckpt_path, kind="swap", model=model, model_config=model_config, step=step,
                        train_config=config.to_json(), optimizer=optimizer, rng=capture_rng())

    def write_preview(step: int) -> None:
        grid = render_preview(model, eval_a.input[:4], eval_b.input[:4])
        # whole files only: the Studio shows preview.png while training runs and must never read half a PNG
        write_image(previews_dir / f"step_{step:07d}.png", grid)
        write_image(out / PREVIEW_NAME, grid)

    if start_step == 0:
        evaluate(0)
    stop = StopFlag()
    step = start_step
    images_per_s = 0.0
    last: dict[str, float] = {}
    interrupted = False
    stream = BatchStream(faces_a, faces_b, config.batch, config.augment, seed=config.seed,
                         start_step=start_step, workers=config.workers,
                         probabilities=(sampling_probabilities(faces_a, "A", config),
                                        sampling_probabilities(faces_b, "B", config)))
    # disable=None: tqdm shows the bar only on a terminal (no carriage-return noise in logs)
    bar = tqdm(total=config.steps, initial=start_step, desc="train faces", unit="step",
               disable=None if config.progress else True, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        with catch_stop_signals(stop), stream:
            batches = iter(stream)
            deadline = started + config.max_minutes * 60 if config.max_minutes else float("inf")
            while step < config.steps and not stop.is_set and time.perf_counter() < deadline:
                batch = next(batches)
                side_a, side_b = _to_device(batch.a, device), _to_device(batch.b, device)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(config, step)
                terms_a, terms_b, gap = training_step(model, optimizer, side_a, side_b, config.loss, autocast,
                                                      scaler)
                step += 1
                elapsed = time.perf_counter() - started
                images_per_s = 2 * config.batch * (step - start_step) / max(elapsed, 1e-9)
                last = {f"{term}_{side}": float(terms[key].detach())
                        for side, terms in (("a", terms_a), ("b", terms_b))
                        for term, key in (("loss", "total"), ("l1", "l1"), ("dssim", "dssim"), ("mask", "mask"))}
                last["code_gap"] = float(gap)
                loss_log.write({"step": step, **{k: f"{v:.6f}" for k, v in last.items()},
                                "images_per_s": f"{images_per_s:.2f}"})
                if tensorboard is not None:
                    tensorboard.add_scalars("loss", last, step)
                bar.update(1)
                bar.set_postfix(loss_a=f"{last['loss_a']:.4f}", loss_b=f"{last['loss_b']:.4f}",
                                img_s=f"{images_per_s:.1f}")
                if step % config.preview_every == 0:
                    write_preview(step)
                if step % eval_every == 0:
                    evaluate(step)
                if step % config.checkpoint_every == 0:
                    write_checkpoint(step)
            interrupted = stop.is_set
            if interrupted:
                log.warning("signal %s: writing a checkpoint at step %d and stopping", stop.signal, step)
            if step % config.checkpoint_every != 0 or step == start_step:
                if step % eval_every != 0:
                    evaluate(step)
                write_checkpoint(step)
            if step % config.preview_every != 0:
                write_preview(step)
    finally:
        bar.close()
        if tensorboard is not None:
            tensorboard.close()
    log.info("stopped at step %d (%.1f images/s); checkpoint %s", step, images_per_s, ckpt_path)
    return TrainResult(step=step, checkpoint=ckpt_path, interrupted=interrupted, stop_signal=stop.signal,
                       images_per_s=images_per_s,
                       last_losses=last)
