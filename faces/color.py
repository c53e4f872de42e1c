"""Colour transfer: make a (generated) face take the target face's colour statistics."""

from __future__ import annotations

from typing import Any, Literal, Union

import cv2
import numpy as np
import numpy.typing as npt

from faces.errors import FaceError
from faces.types import Float32Array, Float64Array, ImageRGB, check_frame

ColorMode = Literal["rct", "lct", "none"]
COLOR_MODES: tuple[str, ...] = ("rct", "lct", "none")
Weights = npt.NDArray[np.floating[Any]]
"""A [0,1] weight per pixel (height, width) or (height, width, 1)."""
MaskArg = Union[Weights, tuple[Weights | None, Weights | None], None]

_EPS = 1e-6


def transfer_color(
    source_rgb: ImageRGB,
    target_rgb: ImageRGB,
    mode: ColorMode,
    mask: MaskArg = None,
) -> ImageRGB:
    """Return *source_rgb* recoloured to *target_rgb*'s statistics (uint8 RGB, source's size).

    mode "rct": Reinhard transfer, per-channel mean/std in LAB. "lct": linear transfer, mean and 3x3 covariance
    in RGB (matrix square roots). "none": an unchanged copy. *mask* restricts the statistics (not the output) to
    a region: one [0,1] array used for both images, or a (source_mask, target_mask) pair (None = whole image).
    """
    source = check_frame(source_rgb, "source_rgb")
    target = check_frame(target_rgb, "target_rgb")
    if mode not in COLOR_MODES:
        raise FaceError(f"colour mode must be one of {', '.join(COLOR_MODES)}, got {mode!r}")
    if mode == "none":
        return source.copy()
    source_mask, target_mask = _split_masks(mask, source.shape[:2], target.shape[:2])
    if mode == "rct":
        return _reinhard(source, target, source_mask, target_mask)
    return _linear(source, target, source_mask, target_mask)


def _split_masks(
    mask: MaskArg, source_shape: tuple[int, ...], target_shape: tuple[int, ...]
) -> tuple[Float64Array | None, Float64Array | None]:
    if mask is None:
        return None, None
    if isinstance(mask, tuple):
        if len(mask) != 2:
            raise FaceError("mask must be one array or a (source_mask, target_mask) pair")
        return _check_weights(mask[0], source_shape, "source"), _check_weights(mask[1], target_shape, "target")
    # One mask for both (the server's case): checked once where the sizes agree (else the target's check says
    # why), and the one array lets _reinhard build its weights once.
    weights = _check_weights(mask, source_shape, "source")
    same_size = tuple(source_shape) == tuple(target_shape)
    return weights, weights if same_size else _check_weights(mask, target_shape, "target")


def _check_weights(mask: Weights | None, shape: tuple[int, ...], which: str) -> Float64Array | None:
    if mask is None:
        return None
    arr = np.asarray(mask, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.shape != tuple(shape):
        raise FaceError(f"{which} mask must have the {which} image's size {tuple(shape)}, got {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise FaceError(f"{which} mask values must lie in [0, 1]")
    if arr.sum() < 1.0:
        raise FaceError(f"{which} mask selects no pixels; colour statistics need some")
    return arr.reshape(-1)


def _moments_weights(weights: Float64Array | None, shape: tuple[int, ...]) -> Float32Array | None:
    """*weights* (flat, as _check_weights returns) as (H, W, 3) float32 summing to 1 per channel, made once per call
    so each statistics pass is two multiplies and two sums."""
    if weights is None:
        return None
    normalised = (weights * (1.0 / weights.sum())).astype(np.float32).reshape(shape[0], shape[1])
    return np.asarray(cv2.merge([normalised, normalised, normalised]), dtype=np.float32)


def _weighted_mean_std(lab: Float32Array, weights3: Float32Array | None) -> tuple[Float64Array, Float64Array]:
    """Per-channel mean and std of an (H, W, 3) float32 image, weighted by _moments_weights' array.

    OpenCV's single-threaded sums rather than `w @ pixels`: numpy runs that as a BLAS gemv, and OpenBLAS splits
    a 4096x3 gemv over its thread pool, which stalls for milliseconds when the cores are busy with video
    (measured 1-4 ms per call in the stream server, against ~10 us here). One pass for both moments
    (var = E[x^2] - E[x]^2) instead of a second, centred pass over the image: LAB values are at most ~100, the
    products are float32 and OpenCV sums them in double, so the cancellation is far below a thousandth of a std.
    """
    if weights3 is None:
        mean_mat, std_mat = cv2.meanStdDev(lab)
        return np.asarray(mean_mat, dtype=np.float64).reshape(3), np.asarray(std_mat, dtype=np.float64).reshape(3)
    weighted = cv2.multiply(lab, weights3)
    mean = np.array(cv2.sumElems(weighted)[:3])
    second = np.array(cv2.sumElems(cv2.multiply(weighted, lab))[:3])
    return mean, np.sqrt(np.maximum(second - mean * mean, 0.0))


def _weighted_mean_cov(pixels: Float64Array, weights: Float64Array | None) -> tuple[Float64Array, Float64Array]:
    w = np.ones(pixels.shape[0]) if weights is None else weights
    total = w.sum()
    weights3 = np.repeat(w.reshape(-1, 1, 1), 3, axis=2)
    mean: Float64Array = np.array(cv2.sumElems(cv2.multiply(pixels.reshape(-1, 1, 3), weights3))[:3]) / total
    centred = pixels - mean
    # A (3,N) @ (N,3) product is a small gemm, which OpenBLAS keeps on one thread (unlike a gemv).
    cov: Float64Array = (centred * w[:, None]).T @ centred / total
    return mean, cov


def _to_lab(rgb: npt.NDArray[np.uint8] | npt.NDArray[np.float32]) -> Float32Array:
    """(H, W, 3) float32 LAB of uint8 (0..255) or float (0..1) RGB; L in [0,100], a/b around 0, no 8-bit rounding."""
    unit = rgb.astype(np.float32) * np.float32(1 / 255) if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    return np.asarray(cv2.cvtColor(unit, cv2.COLOR_RGB2LAB), dtype=np.float32)


# Extra Reinhard passes over the result: colours pushed out of the sRGB gamut get clipped (mostly dark pixels
# given a strong tint), which biases the statistics; re-matching the clipped result (at most twice, only while
# some statistic is off by more than RCT_TOLERANCE) brings every LAB mean/std within ~2.5% where a single
# pass can miss by 5% (measured on the astronaut face, docs/faces.md).
RCT_REFINE_PASSES = 2
RCT_TOLERANCE = 0.01


def _reinhard(
    source: ImageRGB, target: ImageRGB, source_mask: Float64Array | None, target_mask: Float64Array | None
) -> ImageRGB:
    source_weights = _moments_weights(source_mask, source.shape)
    target_weights = source_weights if target_mask is source_mask else _moments_weights(target_mask, target.shape)
    mu_t, sd_t = _weighted_mean_std(_to_lab(target), target_weights)
    lab = _to_lab(source)
    mu_s, sd_s = _weighted_mean_std(lab, source_weights)
    for refine in range(RCT_REFINE_PASSES + 1):
        # A flat source channel has no spread to scale; it only shifts.
        gain = np.where(sd_s > _EPS, sd_t / np.maximum(sd_s, _EPS), 1.0)
        # lab * gain + (mu_t - mu_s * gain) per channel, as one OpenCV pass over the image.
        affine = np.zeros((3, 4), dtype=np.float32)
        affine[:, :3] = np.diag(gain)
        affine[:, 3] = mu_t - mu_s * gain
        lab = np.asarray(cv2.transform(lab, affine), dtype=np.float32)
        np.clip(lab[:, :, 0], 0.0, 100.0, out=lab[:, :, 0])
        # OpenCV's float LAB->RGB clips to [0,1]: that is the gamut clipping a refinement pass corrects for.
        rgb = np.asarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), np.float32)
        if refine == RCT_REFINE_PASSES:
            break
        lab = _to_lab(rgb)
        mu_s, sd_s = _weighted_mean_std(lab, source_weights)
        allowed = RCT_TOLERANCE * np.maximum(sd_t, 1.0)
        if np.all(np.abs(mu_s - mu_t) <= allowed) and np.all(np.abs(sd_s - sd_t) <= allowed):
            break
    recoloured: ImageRGB = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return recoloured


def _sqrt_and_inv_sqrt(cov: Float64Array) -> tuple[Float64Array, Float64Array]:
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, _EPS)
    sqrt = (vectors * np.sqrt(values)) @ vectors.T
    inv_sqrt = (vectors / np.sqrt(values)) @ vectors.T
    return sqrt, inv_sqrt


def _linear(
    source: ImageRGB, target: ImageRGB, source_mask: Float64Array | None, target_mask: Float64Array | None
) -> ImageRGB:
    src = source.reshape(-1, 3).astype(np.float64)
    mu_s, cov_s = _weighted_mean_cov(src, source_mask)
    mu_t, cov_t = _weighted_mean_cov(target.reshape(-1, 3).astype(np.float64), target_mask)
    # Regularise so a nearly grey source (rank-deficient covariance) does not blow up its noise.
    ridge = 1e-3 * max(float(np.trace(cov_s)) / 3.0, 1.0) * np.eye(3)
    _, inv_sqrt_s = _sqrt_and_inv_sqrt(cov_s + ridge)
    sqrt_t, _ = _sqrt_and_inv_sqrt(cov_t)
    # A = Ct^1/2 Cs^-1/2 gives A Cs A^T = Ct: the result has the target's covariance (and mean).
    transform = sqrt_t @ inv_sqrt_s
    out = (src - mu_s) @ transform.T + mu_t
    recoloured: ImageRGB = np.clip(out + 0.5, 0, 255).astype(np.uint8).reshape(source.shape)
    return recoloured
