"""Self-describing checkpoints: one safetensors file per run, written atomically, read without pickle.

Layout of `RUN/checkpoint.safetensors` (see docs/CONTRACTS.md):
tensors `model.<name>` (weights) and `optim.state.<param index>.<key>` (Adam moments, where resumable);
metadata (str -> JSON str): "kind", "model_config", "step", "train_config", "rng", "optim_groups",
"optim_scalars", "content_sha256" (over every tensor, so a damaged file is caught on load).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from swapstream.atomic import atomic_write_bytes
from training.errors import CheckpointError, TrainingError

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.safetensors"
Kind = Literal["swap", "digits"]
_REQUIRED_METADATA = ("kind", "model_config", "step", "content_sha256")
# Each metadata field's JSON type; a field of another type is a CheckpointError naming it (never a TypeError).
_METADATA_TYPES: dict[str, type] = {
    "kind": str, "model_config": dict, "step": int, "content_sha256": str, "train_config": dict, "rng": dict,
    "optim_groups": list, "optim_scalars": dict,
}
_TYPE_NAMES = {str: "a string", dict: "a JSON object", int: "an integer", list: "a list"}


@dataclass(frozen=True)
class Checkpoint:
    """Everything read back from a checkpoint file."""

    path: Path
    kind: Kind
    model_config: dict[str, Any]
    step: int
    train_config: dict[str, Any]
    rng: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optim_state: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedRun:
    """A training run's model rebuilt from its checkpoint alone, in eval mode."""

    kind: Kind
    model: torch.nn.Module
    model_config: dict[str, Any]
    step: int
    run_dir: Path


def checkpoint_path(run_dir: str | os.PathLike[str]) -> Path:
    """The checkpoint file of a run directory."""
    return Path(run_dir) / CHECKPOINT_NAME


def _content_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        flat = tensors[name].detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, scalars, state["param_groups"]


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: Kind,
    model: torch.nn.Module,
    model_config: dict[str, Any],
    step: int,
    train_config: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, Any] | None = None,
) -> Path:
    """Write model (+ optimiser) state and metadata to `path` atomically and durably (swapstream.atomic)."""
    path = Path(path)
    tensors = {f"model.{name}": value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    metadata = {
        "kind": json.dumps(kind),
        "model_config": json.dumps(model_config),
        "step": json.dumps(int(step)),
        "train_config": json.dumps(train_config or {}),
        "rng": json.dumps(rng or {}),
    }
    if optimizer is not None:
        optim_tensors, scalars, groups = _optimizer_tensors(optimizer)
        tensors.update(optim_tensors)
        metadata["optim_groups"] = json.dumps(groups)
        metadata["optim_scalars"] = json.dumps(scalars)
    metadata["content_sha256"] = json.dumps(_content_digest(tensors))
    payload = save_safetensors_bytes(tensors, metadata=metadata)
    atomic_write_bytes(path, payload)
    log.debug("wrote %s (step %d, %d bytes)", path, step, len(payload))
    return path


def _read_metadata(path: Path, raw: bytes) -> dict[str, str]:
    # the header is 8 bytes of little-endian length then JSON; safetensors.torch.load drops the metadata
    if len(raw) < 8:
        raise CheckpointError(f"checkpoint {path} is truncated ({len(raw)} bytes)")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len <= 0 or 8 + header_len > len(raw):
        raise CheckpointError(f"checkpoint {path} is corrupt: header length {header_len} does not fit the file")
    try:
        header = json.loads(raw[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: unreadable header ({exc})") from exc
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"checkpoint {path} has no metadata; it was not written by swapstream")
    return metadata


def _check_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Every required field present and every known field of its JSON type; CheckpointError names field and file."""
    missing = [key for key in _REQUIRED_METADATA if key not in metadata]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks metadata {', '.join(missing)} (content_sha256: the "
                              "digest of its tensors, written by every swapstream checkpoint)")
    for key, wanted in _METADATA_TYPES.items():
        value = metadata.get(key)
        if key in metadata and (isinstance(value, bool) or not isinstance(value, wanted)):
            raise CheckpointError(f"checkpoint {path}: metadata {key!r} must be {_TYPE_NAMES[wanted]}, "
                                  f"got {value!r:.80}")
    if metadata["step"] < 0:
        raise CheckpointError(f"checkpoint {path}: metadata 'step' must be >= 0, got {metadata['step']}")


def read_checkpoint(path: str | os.PathLike[str], expected_kind: Kind | None = None) -> Checkpoint:
    """Read and verify a checkpoint file; CheckpointError naming the file if it is missing, corrupt or not `expected_kind`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc
    metadata_raw = _read_metadata(path, raw)
    try:
        tensors = load_safetensors_bytes(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: {exc}") from exc
    try:
        metadata = {key: json.loads(value) for key, value in metadata_raw.items()}
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: metadata is not JSON ({exc})") from exc
    _check_metadata(path, metadata)
    if _content_digest(tensors) != metadata["content_sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupt: tensor data does not match its checksum")
    kind = metadata["kind"]
    if kind not in ("swap", "digits"):
        raise CheckpointError(f"checkpoint {path} has unknown kind {kind!r}")
    if expected_kind is not None and kind != expected_kind:
        raise CheckpointError(f"checkpoint {path} holds a {kind} model, not a {expected_kind} model")
    return Checkpoint(
        path=path,
        kind=kind,
        model_config=dict(metadata["model_config"]),
        step=int(metadata["step"]),
        train_config=dict(metadata.get("train_config", {})),
        rng=dict(metadata.get("rng", {})),
        model_state={k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
        optim_state={k: v for k, v in tensors.items() if k.startswith("optim.")},
        metadata=metadata,
    )


def build_model(kind: Kind, model_config: dict[str, Any]) -> torch.nn.Module:
    """A fresh model of `kind` from its constructor arguments."""
    if kind == "swap":
        from training.swap_model import SwapAutoencoder

        return SwapAutoencoder(**model_config)
    if kind == "digits":
        from training.digits_model import DigitNet

        return DigitNet(**model_config)
    raise ValueError(f"unknown model kind {kind!r}")


def restore_model(checkpoint: Checkpoint, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """Load the checkpoint's weights into `model` (or a model built from its config)."""
    try:
        if model is None:
            model = build_model(checkpoint.kind, checkpoint.model_config)
        model.load_state_dict(checkpoint.model_state, strict=True)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint.path} does not fit the model: {exc}") from exc
    return model


def restore_optimizer(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer) -> None:
    """Load the checkpoint's optimiser state into `optimizer`; CheckpointError if it has none or it does not fit."""
    if "optim_groups" not in checkpoint.metadata:
        raise CheckpointError(f"checkpoint {checkpoint.path} has no optimiser state to resume from")
    per_param: dict[int, dict[str, Any]] = {}
    for name, value in checkpoint.optim_state.items():
        _, _, index, key = name.split(".", 3)
        per_param.setdefault(int(index), {})[key] = value
    for name, value in checkpoint.metadata.get("optim_scalars", {}).items():
        index, key = name.split(".", 1)
        per_param.setdefault(int(index), {})[key] = value
    # JSON turned tuples (Adam's betas) into lists; put them back so the optimiser sees what it saved
    groups = [{key: (tuple(value) if isinstance(value, list) and key != "params" else value)
               for key, value in group.items()} for group in checkpoint.metadata["optim_groups"]]
    state = {"state": per_param, "param_groups": groups}
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint.path}: optimiser state does not fit: {exc}") from exc


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Rebuild a run's model from `RUN/checkpoint.safetensors` alone (eval mode, CPU)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    checkpoint = read_checkpoint(checkpoint_path(run_dir))
    model = restore_model(checkpoint)
    model.eval()
    return LoadedRun(
        kind=checkpoint.kind,
        model=model,
        model_config=checkpoint.model_config,
        step=checkpoint.step,
        run_dir=run_dir,
    )


def capture_rng() -> dict[str, Any]:
    """The random states a resumed run must continue from, as JSON-able data."""
    import base64
    import random

    import numpy as np

    py_state = random.getstate()
    np_state = np.random.get_state()
    return {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the random states saved by `capture_rng` (missing parts are left alone)."""
    import base64
    import random

    import numpy as np

    if "torch" in state:
        raw = base64.b64decode(state["torch"])
        torch.set_rng_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


def run_writer(prog: str, write: Callable[[], Path]) -> int:
    """The end of a command that writes one checkpoint file (`python -m training.base`, `training.average`): the
    file and its size on success, `prog: error: ...` and exit status 1 on a TrainingError."""
    try:
        path = write()
    except TrainingError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
