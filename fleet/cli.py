"""`swapstream triton --models DIR [--host 127.0.0.1] [--grpc-port 8001] [--http-port 8000] [--metrics-port 8002]`.

Serves every model of the manifest on a real Triton Inference Server (PyTriton's bundled tritonserver, the models
run by ONNX Runtime inside its Python backend) until SIGTERM or SIGINT, then stops it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from fleet.config import TritonServeConfig
from fleet.server import TritonModelServer
from swapstream.triton_model import MAX_QUEUE_DELAY_US

log = logging.getLogger(__name__)


def parse_args(argv: list[str]) -> TritonServeConfig:
    """The command's flags as its config (ConfigError naming a bad flag)."""
    parser = argparse.ArgumentParser(
        prog="swapstream triton",
        description="Serve the exported models on a Triton Inference Server (PyTriton) for `serve --inference "
                    "triton://HOST:PORT`. Stops on SIGTERM or Ctrl+C.")
    parser.add_argument("--models", type=Path, required=True, help="exported models folder (manifest.json)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; 0.0.0.0 for all)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port, what media servers use (8001)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port (8000)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (8002)")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="largest batch per model (default: as MODELS/triton's config.pbtxt says, else 16)")
    parser.add_argument("--max-queue-delay-us", type=int, default=MAX_QUEUE_DELAY_US,
                        help=f"how long Triton may hold a request to fill a batch ({MAX_QUEUE_DELAY_US})")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads per model (default: one per CPU core)")
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds the models may take to load")
    args = parser.parse_args(argv)
    return TritonServeConfig(models_dir=args.models, host=args.host, grpc_port=args.grpc_port,
                             http_port=args.http_port, metrics_port=args.metrics_port, max_batch=args.max_batch,
                             max_queue_delay_us=args.max_queue_delay_us, threads=args.threads,
                             ready_timeout_s=args.ready_timeout)


def main(argv: list[str]) -> int:
    """Run `swapstream triton`; returns the exit code (errors are raised for swapstream.cli to report)."""
    config = parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping Triton", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with TritonModelServer(config) as server:
            names = ", ".join(binding.name for binding in server.bindings)
            log.info("Triton ready in %.1f s: %s on grpc %s, http %s:%d, metrics http://%s:%d/metrics",
                     server.startup_s or 0.0, names, server.grpc_url, config.client_host, config.http_port,
                     config.client_host, config.metrics_port)
            log.info("media servers: swapstream serve --models %s --inference triton://%s", config.models_dir,
                     server.grpc_url)
            server.serve_until(stop)
        log.info("Triton stopped cleanly")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
