"""The digit model: a 16x16 grey image read as 256 values -> 10 logits."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

Arch = Literal["mlp", "cnn"]
IMAGE_SIDE = 16
INPUTS = IMAGE_SIDE * IMAGE_SIDE
CLASSES = 10


class DigitNet(nn.Module):
    """N x 256 (16x16 row-major, ink bright 1.0 on dark 0.0) -> N x 10 logits.

    `arch="mlp"`: weighted sums and activations only. `arch="cnn"`: reshapes to 1x16x16 inside,
    so both take and give the same shapes. The constructor's keyword arguments are the checkpoint's
    `model_config`.
    """

    def __init__(
        self,
        arch: Arch = "mlp",
        hidden: list[int] | tuple[int, ...] | None = None,
        channels: list[int] | tuple[int, ...] = (16, 32),
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if arch not in ("mlp", "cnn"):
            raise ValueError(f"arch must be 'mlp' or 'cnn', not {arch!r}")
        if hidden is None:
            hidden = (128, 64) if arch == "mlp" else (128,)
        if dropout is None:
            dropout = 0.2 if arch == "mlp" else 0.1
        self.arch = arch
        self.config: dict[str, Any] = {
            "arch": arch,
            "hidden": list(hidden),
            "channels": list(channels),
            "dropout": dropout,
        }
        layers: list[nn.Module] = []
        if arch == "cnn":
            in_ch, side = 1, IMAGE_SIDE
            for out_ch in channels:
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
                in_ch, side = out_ch, side // 2
            layers.append(nn.Flatten(1))
            width = in_ch * side * side
        else:
            width = INPUTS
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, CLASSES))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch == "cnn":
            x = x.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)
        return self.layers(x)

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())
