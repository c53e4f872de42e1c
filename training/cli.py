"""`swapstream train faces|digits`: parse flags into a frozen config and run the trainer."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from typing import TYPE_CHECKING

from training.errors import TrainingError

if TYPE_CHECKING:
    from training.train_faces import ModelShape

log = logging.getLogger(__name__)


def _faces_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faces", help="train a face-swap model (shared encoder + decoders A and B)",
                       description="Train a face-swap model on two face sets made by `swapstream extract`.")
    p.add_argument("--a", required=True, type=Path, help="face-set folder of identity A (the person on camera)")
    p.add_argument("--b", required=True, type=Path, help="face-set folder of identity B (the face to put on A)")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoint, previews, losses.csv)")
    p.add_argument("--size", type=int, default=64, help="face size in px: 64, 128 or 256 (default 64)")
    p.add_argument("--steps", type=int, default=5000, help="total training steps (default 5000)")
    p.add_argument("--batch", type=int, default=16, help="faces per identity per step (default 16)")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (default 5e-4)")
    p.add_argument("--lr-final", type=float, default=1.0,
                   help="cosine-decay the learning rate to lr x this at the last step (default 1.0: constant)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.safetensors")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop with a checkpoint after this many minutes of training (0: run all --steps)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: CUDA if present")
    p.add_argument("--preview-every", type=int, default=500, help="steps between preview grids (default 500)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="steps between reconstruction checks (eval.csv); 0: with each checkpoint")
    p.add_argument("--workers", type=int, default=2, help="background threads preparing batches (default 2)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--base", type=Path, default=None, metavar="CHECKPOINT",
                   help="start from this checkpoint's shared encoder and both decoders (e.g. "
                        "models/demo/base.safetensors) instead of random weights: a usable swap in minutes; "
                        "without shape flags the model takes the base's shape")
    # shape flags default to None so that, with --base, "not given" can mean "the base's"
    p.add_argument("--encoder-channels", type=int, default=None,
                   help="first encoder conv width, doubles per level (default 32)")
    p.add_argument("--bottleneck", type=int, default=None, help="dense bottleneck width (default 256)")
    p.add_argument("--code-channels", type=int, default=None, help="channels of the shared spatial code (default 128)")
    p.add_argument("--decoder-channels", type=int, default=None,
                   help="first decoder stage width, halves per level (default 128)")
    p.add_argument("--residual-blocks", type=int, default=None, help="residual blocks per decoder level (default 1)")
    p.add_argument("--eyes-mouth-weight", type=float, default=1.0,
                   help="extra loss weight on eyes and mouth (default 1); --eyes-weight / --mouth-weight set one")
    p.add_argument("--eyes-weight", type=float, default=None,
                   help="extra loss weight on the eyes (default: as --eyes-mouth-weight)")
    p.add_argument("--mouth-weight", type=float, default=None,
                   help="extra loss weight on the mouth (default: as --eyes-mouth-weight)")
    p.add_argument("--l1-weight", type=float, default=1.0, help="weight of the masked L1 loss (default 1)")
    p.add_argument("--dssim-weight", type=float, default=1.0, help="weight of the masked DSSIM loss (default 1)")
    p.add_argument("--edge-weight", type=float, default=0.0,
                   help="weight of the masked L1 between image gradients, for sharp edges (default 0: off)")
    p.add_argument("--code-align-weight", type=float, default=0.0,
                   help="pull the mean codes of A's and B's faces together, so decoder B reads A's expressions "
                        "in the code region it learned (default 0: off; 1 is a good start)")
    p.add_argument("--mask-weight", type=float, default=0.5, help="weight of the mask loss (default 0.5)")
    p.add_argument("--warp-strength", type=float, default=0.025,
                   help="random warp of the input, control-point sigma / face size (default 0.025)")
    p.add_argument("--colour-swap", type=float, default=0.0,
                   help="share of inputs recoloured to the other identity's colours, target unchanged (default 0)")
    p.add_argument("--balance-eyes", type=float, default=0.0,
                   help="draw faces with rare eye openings (blinks) more often: 0 uniform (default), 1 every "
                        "eye opening about equally often")
    p.add_argument("--balance-mouth", type=float, default=0.0,
                   help="the same for the mouth opening (default 0)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (logs only; also off when stderr is not a terminal)")


def _digits_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("digits", help="train the 16x16 digit model (MLP or small CNN)",
                       description="Train the digit model: 256 inputs -> 10 logits, cross-entropy, on the scans "
                                   "and pad-like drawings of them; scored on the scans' held-out quarter and on "
                                   "the drawn set.")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoint, confusion.png, loss_curve.png)")
    p.add_argument("--arch", choices=("mlp", "cnn"), default="mlp", help="mlp (default) or cnn")
    p.add_argument("--data", type=Path, default=None,
                   help="USPS data (usps.h5 with train/test groups, or a libsvm text file) instead of scikit-learn's "
                        "digits; or a folder of corrections (from `swapstream serve --digits-corrections DIR`) "
                        "to add to scikit-learn's digits")
    p.add_argument("--test-data", type=Path, default=None, help="libsvm test file to go with --data")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this digits run's weights (fine-tune; --arch must match)")
    p.add_argument("--epochs", type=int, default=None,
                   help="default 30 (mlp) / 20 (cnn); 10 with --init")
    p.add_argument("--batch", type=int, default=64, help="mini-batch size (default 64)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3)")
    p.add_argument("--pad-variants", type=int, default=8,
                   help="pad-like drawings rendered from each training scan (default 8; 0: scans only)")
    p.add_argument("--correction-repeat", type=int, default=20,
                   help="times each --data correction is repeated in the training set (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (also off when stderr is not a terminal)")


def build_parser() -> argparse.ArgumentParser:
    """The `swapstream train` argument parser."""
    parser = argparse.ArgumentParser(prog="swapstream train", description="Train swapstream models.")
    sub = parser.add_subparsers(dest="what", required=True, metavar="{faces,digits}")
    _faces_parser(sub)
    _digits_parser(sub)
    return parser


_SHAPE_FLAGS = ("encoder_channels", "bottleneck", "code_channels", "decoder_channels", "residual_blocks")


def _model_shape(args: argparse.Namespace) -> ModelShape | None:
    """The shape flags given, defaults for the rest; None (take the base's shape) with --base and no shape flag."""
    from training.train_faces import ModelShape

    given = {name: getattr(args, name) for name in _SHAPE_FLAGS if getattr(args, name) is not None}
    if args.base is not None and not given:
        return None
    return dataclasses.replace(ModelShape(), **given)


def _run_faces(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from training.losses import LossWeights
    from training.train_faces import FaceTrainConfig, train_faces
    from training.warp import AugmentConfig

    if not args.eyes_mouth_weight >= 0:
        # LossWeights would name --eyes-weight, a flag this user did not give
        parser.error(f"--eyes-mouth-weight must not be negative, got {args.eyes_mouth_weight}")
    try:
        config = FaceTrainConfig(
            faces_a=args.a, faces_b=args.b, out=args.out, size=args.size, steps=args.steps, batch=args.batch,
            lr=args.lr, lr_final=args.lr_final, resume=args.resume, device=args.device, preview_every=args.preview_every,
            checkpoint_every=args.checkpoint_every, eval_every=args.eval_every, workers=args.workers,
            threads=args.threads, seed=args.seed, max_minutes=args.max_minutes, shape=_model_shape(args), base=args.base,
            loss=LossWeights(l1=args.l1_weight, dssim=args.dssim_weight, mask=args.mask_weight,
                             eyes=args.eyes_mouth_weight if args.eyes_weight is None else args.eyes_weight,
                             mouth=args.eyes_mouth_weight if args.mouth_weight is None else args.mouth_weight,
                             edge=args.edge_weight,
                             code_align=args.code_align_weight),
            augment=AugmentConfig(warp_strength=args.warp_strength, colour_swap=args.colour_swap),
            balance_eyes=args.balance_eyes, balance_mouth=args.balance_mouth, progress=not args.no_progress,
        )
    except ValueError as exc:
        parser.error(str(exc))
    result = train_faces(config)
    state = "interrupted" if result.interrupted else "finished"
    print(f"train faces: {state} at step {result.step} ({result.images_per_s:.1f} images/s); "
          f"checkpoint {result.checkpoint}")
    # a run stopped by a signal exits like the signal would have (128 + number), with its checkpoint written
    return 128 + result.stop_signal if result.interrupted and result.stop_signal else 0


def _run_digits(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from training.digits import DigitsTrainConfig, train_digits

    try:
        config = DigitsTrainConfig(out=args.out, arch=args.arch, data=args.data, test_data=args.test_data,
                                   init=args.init, epochs=args.epochs, batch=args.batch, lr=args.lr,
                                   pad_variants=args.pad_variants, correction_repeat=args.correction_repeat,
                                   seed=args.seed, progress=not args.no_progress)
    except ValueError as exc:
        parser.error(str(exc))
    result = train_digits(config)
    print(f"train digits ({config.arch}) in {result.seconds:.1f} s:\n"
          f"  test accuracy, scans (held out): {result.scans.accuracy:.2%} "
          f"of {result.scans.count}\n"
          f"  test accuracy, drawn on the pad (training/data/drawn_digits.json): {result.drawn.accuracy:.2%} "
          f"of {result.drawn.count}")
    if result.corrections_right is not None:
        right, total = result.corrections_right
        print(f"  corrections read right: {right} of {total}")
    print(f"wrote {result.checkpoint}, {config.out / 'confusion.png'}, {config.out / 'loss_curve.png'}")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `swapstream train`; library errors propagate to swapstream.cli as TrainingError."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.what == "faces":
        return _run_faces(args, parser)
    if args.what == "digits":
        return _run_digits(args, parser)
    raise TrainingError(f"unknown training target {args.what!r}")


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
