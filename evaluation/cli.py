"""`swapstream evaluate --models DIR [--model NAME] --a A_SOURCES... [--b B_SOURCES...] --out REPORT_DIR`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.config import EvaluateConfig
from faces.color import COLOR_MODES


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = argparse.ArgumentParser(
        prog="swapstream evaluate",
        description="Run A's held-out frames through the server's own pipeline (detect, align, infer, blend) and "
        "measure the swap: identity (a dlib judge), expression and pose kept, sharpness, temporal stability and "
        "blend seam. Writes REPORT_DIR/report.json, summary.txt and summary.png. See docs/quality.md.",
    )
    parser.add_argument("--models", required=True, type=Path, metavar="DIR", help="folder holding manifest.json")
    parser.add_argument("--model", default="a2b", metavar="NAME",
                        help="swap model by manifest name or direction (default a2b)")
    parser.add_argument("--a", required=True, nargs="+", type=Path, metavar="SRC", dest="a_sources",
                        help="A's held-out videos, photos or folders of photos (frames the model never trained on)")
    parser.add_argument("--b", nargs="+", type=Path, default=[], metavar="SRC", dest="b_sources",
                        help="B's videos / photos for the identity judge (without them identity is not judged)")
    parser.add_argument("--out", required=True, type=Path, metavar="REPORT_DIR", help="folder for the report")
    parser.add_argument("--max-frames", type=int, default=0, metavar="N", help="most frames per A video (0: all)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="every N-th frame of A's videos")
    parser.add_argument("--b-frames", type=int, default=60, metavar="N",
                        help="B frames the judge describes (default 60)")
    parser.add_argument("--still-frames", type=int, default=30, metavar="N",
                        help="still-clip length for temporal stability (default 30; 0 skips it)")
    parser.add_argument("--still-noise", type=float, default=2.0, metavar="SIGMA",
                        help="sensor noise added to the still clip, grey levels (default 2)")
    parser.add_argument("--color", choices=COLOR_MODES, default="rct", help="colour transfer (default rct)")
    parser.add_argument("--feather", type=int, default=4, help="blend feather, crop px (default 4)")
    parser.add_argument("--keep-mouth", action="store_true",
                        help="the server's keep_mouth option: A's own lips and teeth left in the swap")
    parser.add_argument("--detect-every", type=int, default=None, metavar="N",
                        help="re-detect every N frames (default: the server's)")
    parser.add_argument("--samples", type=int, default=6, metavar="N", help="sample pairs per source in the PNG")
    return parser


def config_from_args(argv: list[str]) -> EvaluateConfig:
    """Parse `argv` into the validated config."""
    args = build_parser().parse_args(argv)
    return EvaluateConfig(
        models_dir=args.models, a_sources=tuple(args.a_sources), out=args.out, model=args.model,
        b_sources=tuple(args.b_sources), max_frames=args.max_frames, every=args.every, b_frames=args.b_frames,
        still_frames=args.still_frames, still_noise=args.still_noise, color=args.color, feather=args.feather,
        keep_mouth=args.keep_mouth, detect_every=args.detect_every, samples=args.samples, progress=sys.stderr.isatty(),
    )


def main(argv: list[str]) -> int:
    """Evaluate, write the report, print the summary."""
    from evaluation.evaluate import run_evaluation
    from evaluation.figures import write_figure
    from evaluation.report import summary_text, write_report

    config = config_from_args(argv)
    result = run_evaluation(config)
    json_path, text_path = write_report(result, config.out)
    png_path = write_figure(result, config.out)
    print(summary_text(result), end="")
    print(f"wrote {json_path}, {text_path}, {png_path}")
    return 0
