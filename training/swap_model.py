"""The face-swap autoencoder: one encoder shared by both identities, one decoder per identity.

Encode A and decode with B's decoder to put B's face on A's pose and expression.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import nn

log = logging.getLogger(__name__)

Side = Literal["a", "b"]
GROWTH_DEFAULTS: dict[str, int] = {"decoder_min_channels": 8, "full_size_blocks": 0}
"""The growth options' values in the shape every model had before they existed (`training.grow`); a model_config
without them means these."""
Direction = Literal["a2b", "b2a", "a2a", "b2b"]


def _conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    # kernel 4 with stride 2 halves the size exactly with padding 1; kernel 3 keeps it
    kernel = 4 if stride == 2 else 3
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, padding=1), nn.LeakyReLU(0.1, inplace=True))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection; `activate_sum=False` leaves the sum as it is, so a block whose
    last convolution is zero passes its input on unchanged (how `training.grow` adds one to a trained model)."""

    def __init__(self, channels: int, activate_sum: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.act: nn.Module = nn.LeakyReLU(0.2, inplace=True) if activate_sum else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class Upscale(nn.Module):
    """Doubles the spatial size with a convolution to 4x channels and a pixel shuffle."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch * 4, 3, padding=1)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.act(self.conv(x)))


class Encoder(nn.Module):
    """Strided convolutions -> dense bottleneck -> a small spatial code (code_channels x 2*base x 2*base)."""

    def __init__(self, face_size: int, channels: int, depth: int, bottleneck: int, code_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for level in range(depth):
            out_ch = channels * 2**level
            layers.append(_conv(in_ch, out_ch, stride=2))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.base = face_size // 2**depth
        self.code_channels = code_channels
        self.to_bottleneck = nn.Linear(in_ch * self.base * self.base, bottleneck)
        self.from_bottleneck = nn.Linear(bottleneck, code_channels * self.base * self.base)
        self.upscale = Upscale(code_channels, code_channels)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """Faces -> the dense bottleneck vector (N, bottleneck): where the trainer compares A's and B's codes."""
        return self.to_bottleneck(self.features(x).flatten(1))

    def expand(self, z: torch.Tensor) -> torch.Tensor:
        """The bottleneck vector -> the spatial code the decoders read."""
        h = self.from_bottleneck(z).view(-1, self.code_channels, self.base, self.base)
        return self.upscale(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.bottleneck(x))


class Decoder(nn.Module):
    """Upsamples the shared code to an RGB face in [0,1] and a one-channel mask in [0,1]."""

    def __init__(self, code_channels: int, channels: int, upscales: int, residual_blocks: int,
                 min_channels: int, full_size_blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = code_channels
        for level in range(upscales):
            out_ch = max(channels // 2**level, min_channels)
            layers.append(Upscale(in_ch, out_ch))
            layers.extend(ResidualBlock(out_ch) for _ in range(residual_blocks))
            in_ch = out_ch
        # appended after every level's layers, so a model grown from one without them keeps its layers' names
        layers.extend(ResidualBlock(in_ch, activate_sum=False) for _ in range(full_size_blocks))
        self.body = nn.Sequential(*layers)
        self.to_rgb = nn.Conv2d(in_ch, 3, 3, padding=1)
        self.to_mask = nn.Conv2d(in_ch, 1, 3, padding=1)

    def forward(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(code)
        return torch.sigmoid(self.to_rgb(h)), torch.sigmoid(self.to_mask(h))


class SwapAutoencoder(nn.Module):
    """Shared encoder + decoder A + decoder B; input NCHW float32 RGB in [0,1] at `face_size`.

    The constructor's keyword arguments are the checkpoint's `model_config`.
    """

    def __init__(
        self,
        face_size: int = 64,
        encoder_channels: int = 32,
        encoder_depth: int = 4,
        bottleneck: int = 256,
        code_channels: int = 128,
        decoder_channels: int = 128,
        residual_blocks: int = 1,
        decoder_min_channels: int = GROWTH_DEFAULTS["decoder_min_channels"],
        full_size_blocks: int = GROWTH_DEFAULTS["full_size_blocks"],
    ) -> None:
        super().__init__()
        if face_size % 2**encoder_depth:
            raise ValueError(f"face_size {face_size} must be divisible by 2**encoder_depth ({2**encoder_depth})")
        if face_size // 2**encoder_depth < 2:
            raise ValueError(f"encoder_depth {encoder_depth} is too deep for face_size {face_size}")
        self.config: dict[str, Any] = {
            "face_size": face_size,
            "encoder_channels": encoder_channels,
            "encoder_depth": encoder_depth,
            "bottleneck": bottleneck,
            "code_channels": code_channels,
            "decoder_channels": decoder_channels,
            "residual_blocks": residual_blocks,
        }
        # Written only when they differ from the shape every model had before they existed, so that older
        # checkpoints and manifests (which lack them) still compare equal to a model of the same shape.
        growth = {"decoder_min_channels": decoder_min_channels, "full_size_blocks": full_size_blocks}
        self.config.update((key, value) for key, value in growth.items() if value != GROWTH_DEFAULTS[key])
        self.face_size = face_size
        self.encoder = Encoder(face_size, encoder_channels, encoder_depth, bottleneck, code_channels)
        # the encoder's code is already one step up from its smallest size
        upscales = encoder_depth - 1
        self.decoder_a = Decoder(code_channels, decoder_channels, upscales, residual_blocks, decoder_min_channels,
                                 full_size_blocks)
        self.decoder_b = Decoder(code_channels, decoder_channels, upscales, residual_blocks, decoder_min_channels,
                                 full_size_blocks)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Faces (N,3,S,S) in [0,1] -> the shared code."""
        return self.encoder(x)

    def decode(self, code: torch.Tensor, side: Side) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared code -> (rgb (N,3,S,S), mask (N,1,S,S)) in [0,1] as identity `side`."""
        if side == "a":
            return self.decoder_a(code)
        if side == "b":
            return self.decoder_b(code)
        raise ValueError(f"side must be 'a' or 'b', not {side!r}")

    def forward(self, x: torch.Tensor, side: Side = "b") -> tuple[torch.Tensor, torch.Tensor]:
        """Encode `x` and decode as identity `side`."""
        return self.decode(self.encode(x), side)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameter counts per part and in total."""
        counts = {
            name: sum(p.numel() for p in part.parameters())
            for name, part in (("encoder", self.encoder), ("decoder_a", self.decoder_a), ("decoder_b", self.decoder_b))
        }
        counts["total"] = sum(counts.values())
        return counts


class SwapPath(nn.Module):
    """One direction of a swap model as a plain face -> (rgb, mask) module (what export traces)."""

    def __init__(self, model: SwapAutoencoder, direction: Direction) -> None:
        super().__init__()
        if direction not in ("a2b", "b2a", "a2a", "b2b"):
            raise ValueError(f"direction must be a2b, b2a, a2a or b2b, not {direction!r}")
        self.model = model
        self.side: Side = "b" if direction.endswith("b") else "a"

    def forward(self, face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(self.model.encode(face), self.side)


def describe_parameters(model: SwapAutoencoder) -> str:
    """A one-line summary of the parameter counts, e.g. for the training log."""
    counts = model.parameter_counts()
    return ", ".join(f"{name} {count / 1e6:.2f}M" for name, count in counts.items())
