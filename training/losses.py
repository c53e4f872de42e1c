"""Losses of the face-swap trainer: masked L1, masked DSSIM, a masked edge (image gradient) loss, mask loss, and
eye and mouth weight maps.

L1 and DSSIM are satisfied by a face a little softer than the target (a blur costs them little where the target
is smooth on average); the edge term compares the images' gradients directly, so a soft edge costs as much as a
wrong colour. It is off by default (`edge` 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """How much each term counts."""

    l1: float = 1.0
    dssim: float = 1.0
    mask: float = 0.5
    background: float = 0.1
    """Weight of pixels outside the face mask (so previews are sane outside the face)."""
    eyes: float = 1.0
    """Extra weight on both eyes (0 turns it off)."""
    mouth: float = 1.0
    """Extra weight on the mouth (0 turns it off). Two weights, not one: the mouth's figures follow its weight while
    the eyes' do not (docs/quality.md), so each can be set where it pays."""
    edge: float = 0.0
    """Weight of the masked L1 between the images' gradients (sharp edges; 0 turns it off)."""
    code_align: float = 0.0
    """Weight of the squared gap between the mean bottleneck codes of a step's A and B faces (0 turns it off).

    The shared encoder is free to place A's faces and B's in different regions of its code, so the same expression
    can reach decoder B from A in a region it never learned (a closed mouth decoded as a half-open one). The two
    people's footage covers the same range of expressions and poses, so their codes' means should agree.
    """

    def __post_init__(self) -> None:
        for name in ("l1", "dssim", "mask", "background", "eyes", "mouth", "edge", "code_align"):
            if not getattr(self, name) >= 0:
                flag = "--" + name.replace("_", "-") + "-weight"
                raise ValueError(f"{flag} (loss weight {name}) must not be negative, got {getattr(self, name)}")


def _gaussian_taps(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_blur_matrix(size: int, window_size: int, sigma: float, device: torch.device,
                         dtype: torch.dtype) -> torch.Tensor:
    """(size, size) matrix B such that B @ v is v blurred by a `window_size`-tap Gaussian with reflect padding.

    The blur is separable and linear, so a blur of (..., H, W) images is B_H @ images @ B_W.T: two matrix products,
    several times faster on the CPU (forward and backward) than padding plus two depthwise convolutions.
    """
    pad = window_size // 2
    if pad >= size:
        raise ValueError(f"a {window_size}-tap window needs images larger than {pad} px, got {size}")
    taps = _gaussian_taps(window_size, sigma, device, dtype)
    rows = torch.arange(size, device=device)
    matrix = torch.zeros(size, size, device=device, dtype=dtype)
    for k in range(window_size):
        source = rows + k - pad
        # reflect padding (as F.pad mode="reflect"): -1 -> 1, size -> size - 2
        source = torch.where(source < 0, -source, source)
        source = torch.where(source >= size, 2 * (size - 1) - source, source)
        matrix.index_put_((rows, source), taps[k].expand(size), accumulate=True)
    return matrix


def ssim_map(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of two (N,C,H,W) images in [0,1], averaged over channels -> (N,1,H,W)."""
    channels = x.shape[1]
    blur_h = gaussian_blur_matrix(x.shape[2], window_size, sigma, x.device, x.dtype)
    blur_w = gaussian_blur_matrix(x.shape[3], window_size, sigma, x.device, x.dtype)
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    blurred = blur_h @ stacked @ blur_w.T
    mu_x, mu_y, xx, yy, xy = blurred.split(channels, dim=1)

    c1, c2 = 0.01**2, 0.03**2
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim.mean(dim=1, keepdim=True)


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    weight = weight.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1e-6)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean absolute error weighted per pixel by `weight` (N,1,H,W)."""
    return _weighted_mean((pred - target).abs(), weight)


def masked_dssim(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Structural dissimilarity (1 - SSIM) / 2 weighted per pixel by `weight`."""
    return _weighted_mean((1.0 - ssim_map(pred, target)) / 2.0, weight)


def image_gradients(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of (N,C,H,W) images along x (N,C,H,W-1) and along y (N,C,H-1,W)."""
    return images[..., :, 1:] - images[..., :, :-1], images[..., 1:, :] - images[..., :-1, :]


def masked_edge_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the x and y gradients, weighted by `weight` (N,1,H,W) where both pixels of a
    difference lie (the smaller of their two weights)."""
    pred_dx, pred_dy = image_gradients(pred)
    target_dx, target_dy = image_gradients(target)
    weight_dx = torch.minimum(weight[..., :, 1:], weight[..., :, :-1])
    weight_dy = torch.minimum(weight[..., 1:, :], weight[..., :-1, :])
    along_x = ((pred_dx - target_dx).abs() * weight_dx.expand_as(pred_dx)).sum()
    along_y = ((pred_dy - target_dy).abs() * weight_dy.expand_as(pred_dy)).sum()
    total = weight_dx.expand_as(pred_dx).sum() + weight_dy.expand_as(pred_dy).sum()
    return (along_x + along_y) / total.clamp_min(1e-6)


def mask_loss(pred_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """L1 between the predicted and the mesh-hull mask."""
    return (pred_mask - target_mask).abs().mean()


def pixel_weights(mask: torch.Tensor, feature_weight: torch.Tensor | None, weights: LossWeights) -> torch.Tensor:
    """Per-pixel loss weight: 1 on the face, `background` outside, plus `eyes` and `mouth` on their feature maps
    (`feature_weight` (N,2,H,W): channel 0 the eyes, channel 1 the mouth, as feature_weight_map draws them)."""
    out = weights.background + (1.0 - weights.background) * mask
    if feature_weight is None:
        return out
    if feature_weight.ndim != 4 or feature_weight.shape[1] != 2:
        raise ValueError(f"feature weights must be (N, 2, H, W) (eyes, mouth), got {tuple(feature_weight.shape)}")
    if weights.eyes > 0:
        out = out + weights.eyes * feature_weight[:, 0:1]
    if weights.mouth > 0:
        out = out + weights.mouth * feature_weight[:, 1:2]
    return out


def face_losses(
    pred_rgb: torch.Tensor,
    pred_mask: torch.Tensor,
    target: torch.Tensor,
    target_mask: torch.Tensor,
    feature_weight: torch.Tensor | None,
    weights: LossWeights,
) -> dict[str, torch.Tensor]:
    """All loss terms for one identity's batch, plus their weighted sum under "total"."""
    pred_rgb = pred_rgb.float()
    pred_mask = pred_mask.float()
    pixel = pixel_weights(target_mask, feature_weight, weights)
    terms = {
        "l1": masked_l1(pred_rgb, target, pixel),
        "dssim": masked_dssim(pred_rgb, target, pixel),
        "mask": mask_loss(pred_mask, target_mask),
    }
    terms["total"] = weights.l1 * terms["l1"] + weights.dssim * terms["dssim"] + weights.mask * terms["mask"]
    if weights.edge > 0:
        terms["edge"] = masked_edge_l1(pred_rgb, target, pixel)
        terms["total"] = terms["total"] + weights.edge * terms["edge"]
    return terms


def code_gap(code_a: torch.Tensor, code_b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the batch means of A's and B's bottleneck codes (N, D) each."""
    return ((code_a.float().mean(0) - code_b.float().mean(0)) ** 2).mean()


def feature_weight_map(keypoints: np.ndarray, size: int) -> np.ndarray:
    """Soft (S,S,2) float32 maps from the 5 keypoints (crop px): channel 0 is 1 around both eyes, channel 1 around
    the mouth."""
    eyes = np.zeros((size, size), np.float32)
    mouth = np.zeros((size, size), np.float32)
    eye_distance = float(np.linalg.norm(keypoints[1] - keypoints[0]))
    radius = max(1, int(round(0.3 * eye_distance)))
    for eye in keypoints[:2]:
        cv2.circle(eyes, (int(round(eye[0])), int(round(eye[1]))), radius, 1.0, -1)
    left, right = keypoints[3], keypoints[4]
    centre = (left + right) / 2.0
    half_width = max(1, int(round(0.6 * float(np.linalg.norm(right - left)))))
    angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    cv2.ellipse(mouth, (int(round(centre[0])), int(round(centre[1]))), (half_width, max(1, radius)), angle, 0, 360,
                1.0, -1)
    blur = max(3, (size // 16) | 1)
    # one blur over both channels (the loader draws a map for every sample of every step)
    return np.asarray(cv2.GaussianBlur(cv2.merge([eyes, mouth]), (blur, blur), 0), dtype=np.float32)
