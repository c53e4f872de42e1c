"""Training speed of the face-swap model: images/s of full training steps (both identities, all losses,
Adam) at 64 and 128 px, on the CPU and on CUDA when present.

    PYTHONPATH=. python bench/train_speed.py [--sizes 64 128] [--batch 8] [--steps 10] [--shape tiny default]

Images/s counts the faces of both identities (2 x batch per step). Batches are prepared in memory, so this
measures the model and losses; the trainer's background threads prepare real batches alongside.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from training.faceset import SideBatch
from training.losses import LossWeights
from training.swap_model import SwapAutoencoder
from training.train_faces import ModelShape, autocast_for, training_step

SHAPES = {
    "tiny": ModelShape(encoder_channels=16, bottleneck=128, code_channels=64, decoder_channels=64, residual_blocks=0),
    "default": ModelShape(),
}


def _random_side(batch: int, size: int, device: torch.device) -> SideBatch:
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, size // 8 : -size // 8, size // 6 : -size // 6] = 1.0
    # eye and mouth maps (the trainer's two channels): their values do not change a step's cost
    features = (mask * 0.3).expand(batch, 2, size, size).contiguous()
    return SideBatch(torch.rand(batch, 3, size, size).to(device), torch.rand(batch, 3, size, size).to(device),
                     mask.to(device), features.to(device))


def measure(shape: ModelShape, size: int, batch: int, steps: int, warmup: int, device: torch.device) -> tuple[float, int]:
    """(images/s, parameters) of `steps` timed training steps after `warmup` untimed ones."""
    torch.manual_seed(0)
    model = SwapAutoencoder(**shape.model_config(size)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    autocast, scaler = autocast_for(device)
    side_a, side_b = _random_side(batch, size, device), _random_side(batch, size, device)
    weights = LossWeights()
    for _ in range(warmup):
        training_step(model, optimizer, side_a, side_b, weights, autocast, scaler)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        training_step(model, optimizer, side_a, side_b, weights, autocast, scaler)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    return 2 * batch * steps / elapsed, model.parameter_counts()["total"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=8, help="faces per identity per step (default 8)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--shape", nargs="+", choices=sorted(SHAPES), default=["tiny", "default"])
    parser.add_argument("--threads", type=int, nargs="+", default=[0],
                        help="CPU thread counts to try (0: torch's default)")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            parser.error("--device cuda: torch sees no CUDA GPU")
        else:
            print("(no CUDA GPU: CPU only)")
    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}; batch {args.batch} per identity; {args.steps} timed steps")
    print(f"{'device':<8} {'threads':>7} {'shape':<8} {'size':>4} {'params':>8} {'images/s':>9}")
    for device in devices:
        for threads in (args.threads if device.type == "cpu" else [0]):
            torch.set_num_threads(threads or default_threads)
            for shape_name in args.shape:
                for size in args.sizes:
                    rate, params = measure(SHAPES[shape_name], size, args.batch, args.steps, args.warmup, device)
                    label = str(torch.get_num_threads()) if device.type == "cpu" else "-"
                    print(f"{device.type:<8} {label:>7} {shape_name:<8} {size:>4} {params / 1e6:>7.2f}M {rate:>9.1f}",
                          flush=True)
    torch.set_num_threads(default_threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
