"""The `swapstream` command: a thin dispatcher over each package's own CLI.

Each subcommand's module is imported only when that subcommand runs, so
`swapstream serve` works where torch is not installed.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass

from swapstream.errors import SwapstreamError


@dataclass(frozen=True)
class Subcommand:
    module: str
    summary: str
    function: str = "main"


SUBCOMMANDS: dict[str, Subcommand] = {
    "synth": Subcommand("faces.synthetic_cli", "render a synthetic-identity video (test and demo data)"),
    "extract": Subcommand("training.extract", "detect and align faces from videos / image folders into a face set"),
    "train": Subcommand("training.cli", "train a face-swap model (train faces) or the digit model (train digits)"),
    "export": Subcommand("export.cli", "export training runs to ONNX (+TensorRT) with a manifest"),
    "evaluate": Subcommand("evaluation.cli", "measure a swap model through the server's pipeline (docs/quality.md)"),
    "serve": Subcommand("stream_server.cli", "run the WebRTC face-swap server"),
    "triton": Subcommand("fleet.cli", "serve the exported models on a Triton Inference Server (PyTriton)"),
    "client": Subcommand("clients.python_client", "send a video file through the server and record the result"),
    "profile": Subcommand("clients.profile", "measure true round-trip latency against a running server"),
    "virtualcam": Subcommand("clients.virtualcam", "show the swapped stream as a virtual camera for video calls"),
    "keys": Subcommand("provenance.cli", "make a local test CA and C2PA signing certificate (keys init DIR)",
                       "keys_main"),
    "verify": Subcommand("provenance.cli", "check a recording's C2PA Content Credentials", "verify_main"),
}


# Packages the base install leaves out, and the extra that brings each.
_EXTRA_OF_MODULE = {
    **dict.fromkeys(("torch", "onnx", "onnxscript", "safetensors", "sklearn", "skimage"), "train"),
    **dict.fromkeys(("pytriton", "tritonclient"), "triton"),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: swapstream <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {sub.summary}" for name, sub in SUBCOMMANDS.items()]
    lines += ["", "Run `swapstream <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if args else 2
    if args[0] in {"-V", "--version"}:
        from swapstream import __version__

        print(f"swapstream {__version__}")
        return 0
    sub = SUBCOMMANDS.get(args[0])
    if sub is None:
        print(f"swapstream: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        module = importlib.import_module(sub.module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        extra = _EXTRA_OF_MODULE.get(missing)
        if extra is not None:
            print(
                f"swapstream {args[0]}: needs the '{missing}' package, which the server install leaves out; "
                f"install the {extra} extra: pip install -e '.[{extra}]'",
                file=sys.stderr,
            )
            return 2
        raise
    try:
        return int(getattr(module, sub.function)(args[1:]) or 0)
    except SwapstreamError as exc:
        print(f"swapstream {args[0]}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
