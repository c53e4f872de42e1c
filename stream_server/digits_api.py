"""The Digits tab's endpoints: POST /api/digits (read a drawn digit) and POST /api/digits/corrections.

Both follow --token. A PNG's size is read from its header and refused over MAX_PNG_PIXELS before anything is
decoded, and decoding runs on the frame workers, never on the event loop. Corrections ("was this right?
press the right digit") are stored only when the server runs with --digits-corrections DIR: one JSON file per
sample, named by the server, written atomically, at most `digits_corrections_limit` of them; `swapstream train
digits --data DIR` fine-tunes on them (format in docs/CONTRACTS.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from aiohttp import web

from stream_server.errors import ConfigError, SignalingError
from stream_server.app import STATE_KEY
from stream_server.guards import parse_json
from stream_server.signaling import check_token, read_body, read_body_bytes
from swapstream.atomic import atomic_write_text

logger = logging.getLogger(__name__)

DIGIT_SIDE = 16
CLASSES = 10
MAX_PNG_PIXELS = 2048 * 2048
"""Largest PNG accepted by /api/digits, in pixels (width x height from the header): a 16000x16000 PNG of
one colour compresses to a few hundred KB but decodes to 256 MB."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CORRECTION_FORMAT = "swapstream.digit-correction"

FloatArray = npt.NDArray[np.float32]


def digit_input_from_json(data: Any) -> FloatArray:
    """A 16x16 image given as 16 rows of 16 numbers or 256 numbers (ink bright), as 1x256 float32 in [0,1]."""
    if isinstance(data, dict):
        data = data.get("image", data.get("pixels"))
    try:
        pixels = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SignalingError(f"the image must be numbers: {exc}") from exc
    if pixels.shape not in ((DIGIT_SIDE, DIGIT_SIDE), (DIGIT_SIDE * DIGIT_SIDE,)):
        raise SignalingError(f"expected 16 lists of 16 numbers or 256 numbers, got an array of shape {pixels.shape}")
    if not np.isfinite(pixels).all() or pixels.min() < 0:
        raise SignalingError("pixel values must be finite and >= 0 (0..1, or 0..255)")
    if pixels.max() > 1.0:
        pixels = pixels / 255.0  # 8-bit values
    return np.clip(pixels.reshape(1, DIGIT_SIDE * DIGIT_SIDE), 0.0, 1.0)


def png_size(body: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, without decoding; SignalingError if the body is not a PNG."""
    if len(body) < 24 or not body.startswith(PNG_SIGNATURE) or body[12:16] != b"IHDR":
        raise SignalingError("the body is not a PNG (no PNG signature and IHDR header)")
    width, height = struct.unpack(">II", body[16:24])
    return int(width), int(height)


def check_png_size(body: bytes) -> None:
    """Refuse (HTTP 413) a PNG whose header declares more than MAX_PNG_PIXELS."""
    width, height = png_size(body)
    if width * height > MAX_PNG_PIXELS:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_PNG_PIXELS, actual_size=width * height,
            text=f"a {width}x{height} PNG is over the limit of {MAX_PNG_PIXELS} pixels; it was not decoded "
                 f"(send the 16x16 image as JSON, or a smaller PNG)")


def digit_input_from_png(body: bytes) -> FloatArray:
    """A PNG of any size up to MAX_PNG_PIXELS, made grey, 16x16 and ink-bright (dark ink on light paper is inverted).

    Blocking (decodes the image): run it off the event loop.
    """
    check_png_size(body)
    image = cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SignalingError("the body is not a decodable PNG")
    if image.ndim == 3 and image.shape[2] == 4:
        # Transparent background: ink is wherever alpha is high.
        grey = image[:, :, 3].astype(np.float32) / 255.0
    else:
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        grey = image.astype(np.float32) / (65535.0 if image.dtype == np.uint16 else 255.0)
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        if border.mean() > 0.5:
            grey = 1.0 - grey
    small = cv2.resize(grey, (DIGIT_SIDE, DIGIT_SIDE), interpolation=cv2.INTER_AREA)
    return np.clip(small.reshape(1, -1), 0.0, 1.0).astype(np.float32)


def softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Probabilities from logits (numerically stable)."""
    shifted = logits - logits.max()
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum())


class CorrectionsFullError(SignalingError):
    """The corrections folder holds its limit of samples (HTTP 507)."""


class CorrectionStore:
    """The --digits-corrections folder: one atomically written JSON file per corrected sample, up to `limit`."""

    def __init__(self, folder: Path, limit: int) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.count = sum(1 for _ in folder.glob("*.json"))
        except OSError as exc:
            raise ConfigError(f"--digits-corrections {folder}: cannot use the folder: {exc}") from exc
        self.folder = folder
        self.limit = limit

    async def save(self, image: FloatArray, label: int, predicted: int | None, model: str | None,
                   executor: Any) -> str:
        """Store one sample and return its file name; CorrectionsFullError at the limit."""
        if self.count >= self.limit:
            raise CorrectionsFullError(f"the corrections folder holds its limit of {self.limit} samples; train "
                                       f"on them (swapstream train digits --data DIR) and move them away")
        self.count += 1  # reserved before the write, so concurrent requests cannot overshoot the limit
        created = datetime.now(timezone.utc)
        name = f"{created:%Y%m%dT%H%M%S%fZ}-{label}-{uuid.uuid4().hex[:8]}.json"
        sample = {
            "format": CORRECTION_FORMAT, "version": 1, "label": label, "predicted": predicted, "model": model,
            "created": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "image": [[round(float(v), 4) for v in row] for row in image.reshape(DIGIT_SIDE, DIGIT_SIDE)],
        }
        try:
            await asyncio.get_running_loop().run_in_executor(
                executor, atomic_write_text, self.folder / name, json.dumps(sample) + "\n")
        except OSError as exc:
            self.count -= 1
            raise web.HTTPInternalServerError(text=f"could not store the correction: {exc}") from exc
        logger.info("stored a digit correction: %s (label %d, model said %s)", name, label, predicted)
        return name


CORRECTIONS_KEY = web.AppKey("swapstream_digit_corrections", CorrectionStore)


async def _read_json(request: web.Request) -> Any:
    return parse_json(await read_body(request), "the body")


async def handle_digits(request: web.Request) -> web.Response:
    """POST /api/digits: a 16x16 image (JSON array or PNG) -> {"digit", "probabilities"[10], "model", "corrections"}."""
    check_token(request)
    state = request.app[STATE_KEY]
    if state.digits_model is None:
        raise web.HTTPServiceUnavailable(text="no digits model in the manifest (--models)")
    loop = asyncio.get_running_loop()
    try:
        if request.content_type == "image/png":
            body = await read_body_bytes(request)
            check_png_size(body)  # on the loop: reads 24 bytes, so a huge PNG never reaches a worker
            pixels = await loop.run_in_executor(state.executor, digit_input_from_png, body)
        else:
            pixels = digit_input_from_json(await _read_json(request))
    except SignalingError as exc:
        raise SignalingError(f"POST /api/digits: {exc}") from exc
    backend = state.backends[state.digits_model]
    outputs = await loop.run_in_executor(state.executor, backend.run, pixels)
    logits = np.asarray(outputs[0], dtype=np.float64).reshape(-1)
    if logits.shape != (CLASSES,):
        raise web.HTTPInternalServerError(text=f"digits model returned shape {logits.shape}, expected 10 logits")
    probabilities = softmax(logits)
    return web.json_response({"digit": int(np.argmax(probabilities)),
                              "probabilities": [round(float(p), 6) for p in probabilities],
                              "model": state.digits_model,
                              "corrections": CORRECTIONS_KEY in request.app})


def _digit(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < CLASSES:
        raise SignalingError(f"POST /api/digits/corrections: {key!r} must be a digit 0..9, got {value!r}")
    return value


async def handle_correction(request: web.Request) -> web.Response:
    """POST /api/digits/corrections {"image": 16x16, "label": 0..9, "predicted": 0..9|null}: store the sample."""
    check_token(request)
    store = request.app.get(CORRECTIONS_KEY)
    if store is None:
        raise web.HTTPForbidden(text="this server does not store corrections; start it with --digits-corrections DIR")
    body = await _read_json(request)
    if not isinstance(body, dict):
        raise SignalingError('POST /api/digits/corrections: expected {"image": ..., "label": 0..9}')
    label = _digit(body.get("label"), "label")
    predicted = None if body.get("predicted") is None else _digit(body["predicted"], "predicted")
    try:
        image = digit_input_from_json(body.get("image"))
    except SignalingError as exc:
        raise SignalingError(f"POST /api/digits/corrections: {exc}") from exc
    state = request.app[STATE_KEY]
    try:
        name = await store.save(image, label, predicted, state.digits_model, state.executor)
    except CorrectionsFullError as exc:
        raise web.HTTPInsufficientStorage(text=str(exc)) from exc
    return web.json_response({"stored": name, "label": label, "count": store.count}, status=201)


def add_routes(app: web.Application) -> None:
    """Register the digits endpoints; with --digits-corrections, open (and create) the corrections folder."""
    config = app[STATE_KEY].config
    if config.digits_corrections_dir is not None:
        app[CORRECTIONS_KEY] = CorrectionStore(Path(config.digits_corrections_dir), config.digits_corrections_limit)
    app.router.add_post("/api/digits", handle_digits)
    app.router.add_post("/api/digits/corrections", handle_correction)
