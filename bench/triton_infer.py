"""Inference ms per face and per batch through Triton against in-process ONNX Runtime, in one run.

Starts `swapstream triton` on the models (its own process, free loopback ports, the same ONNX Runtime thread count
as the in-process session) and times, per batch size, numpy in -> numpy out:
- `in-process`: ONNX Runtime in this process, as `swapstream serve` runs models today;
- `triton aio`: stream_server.triton_client.TritonInference.run from this (worker) thread, through its asyncio
  client on its own loop thread: what `serve --inference triton://` will use;
- `triton sync`: tritonclient's synchronous gRPC client, called directly: the alternative design, to show what the
  thread hop costs.
Each Triton row states its added p50 over in-process at the same batch size. `--queue-delays 2000 0` repeats the
Triton rows with another dynamic-batcher delay (a lone request waits up to that long for company).

    PYTHONPATH=. .venv/bin/python bench/triton_infer.py --models models/demo
    PYTHONPATH=. .venv/bin/python bench/triton_infer.py --models models/demo --queue-delays 2000 0 --seconds 2
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet.process import TritonCommand  # noqa: E402
from stream_server.inference import ModelEntry, load_backend, load_manifest  # noqa: E402
from stream_server.triton_client import TritonInference  # noqa: E402
from swapstream.triton_model import MAX_QUEUE_DELAY_US, TRITON_DATATYPES, triton_model_name  # noqa: E402

log = logging.getLogger("bench.triton_infer")

ROUNDS = 4


@dataclass(frozen=True)
class BenchConfig:
    """Flags of this benchmark."""

    models: Path
    model: str
    batches: tuple[int, ...]
    seconds: float
    warmup: int
    threads: int
    queue_delays: tuple[int, ...]


@dataclass(frozen=True)
class Timing:
    """One backend at one batch size."""

    backend: str
    batch: int
    p50_ms: float
    p95_ms: float
    calls: int

    @property
    def ms_per_face(self) -> float:
        return self.p50_ms / self.batch


def parse_args(argv: list[str]) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models/demo"))
    parser.add_argument("--model", default="swap_a2b", help="manifest model to time (default swap_a2b)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per backend and batch")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads, in-process and in Triton")
    parser.add_argument("--queue-delays", type=int, nargs="+", default=[MAX_QUEUE_DELAY_US],
                        help=f"Triton dynamic-batcher delays in microseconds (default {MAX_QUEUE_DELAY_US})")
    args = parser.parse_args(argv)
    return BenchConfig(args.models, args.model, tuple(args.batches), args.seconds, args.warmup, args.threads,
                       tuple(args.queue_delays))


class Sampler:
    """Latency samples of one backend at one batch size, gathered over several short windows."""

    def __init__(self, backend: str, batch: int, call: Callable[[], Any], warmup: int) -> None:
        self.backend, self.batch, self.call = backend, batch, call
        self.samples: list[float] = []
        for _ in range(warmup):
            call()

    def sample(self, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            self.call()
            self.samples.append((time.perf_counter() - started) * 1000)

    def timing(self) -> Timing:
        p50, p95 = np.percentile(self.samples, [50, 95])
        return Timing(self.backend, self.batch, float(p50), float(p95), len(self.samples))


def sync_client_call(address: str, entry: ModelEntry, faces: np.ndarray) -> Callable[[], Any]:
    """One request through tritonclient's synchronous gRPC client, decoded to numpy as the aio path does."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(address)
    spec = entry.inputs[0]
    name = triton_model_name(entry.name)

    def call() -> list[np.ndarray]:
        request = grpcclient.InferInput(spec.name, list(faces.shape), TRITON_DATATYPES[spec.dtype])
        request.set_data_from_numpy(faces)
        result = client.infer(name, [request], client_timeout=5.0)
        return [result.as_numpy(output.name) for output in entry.outputs]

    return call


def run_bench(config: BenchConfig) -> list[Timing]:
    manifest = load_manifest(config.models)
    entry = manifest.resolve(config.model)
    local = load_backend(entry, config.models, providers=["CPUExecutionProvider"], intra_op_threads=config.threads)
    rng = np.random.default_rng(0)
    inputs = {batch: rng.random((batch, *entry.inputs[0].tail), dtype=np.float32) for batch in config.batches}
    timings: list[Timing] = []
    with tempfile.TemporaryDirectory(prefix="triton-bench-") as logs, contextlib.ExitStack() as stack:
        servers = []
        for delay in config.queue_delays:
            triton = TritonCommand(config.models, Path(logs), extra_args=(
                "--threads", str(config.threads), "--max-queue-delay-us", str(delay)))
            startup = triton.start()
            stack.callback(_stop, triton)
            print(f"swapstream triton (queue delay {delay} us): ready {startup:.1f} s after launch")
            connection = TritonInference(triton.url, manifest.models, timeout_s=5.0)
            stack.callback(connection.close)
            connection.check()
            servers.append((delay, triton, connection))
        for batch in config.batches:
            faces = inputs[batch]
            samplers = [Sampler("in-process", batch, lambda f=faces: local.run(f), config.warmup)]
            for delay, triton, connection in servers:
                samplers.append(Sampler(f"triton aio {delay}us", batch,
                                        lambda f=faces, c=connection: c.run(entry.name, f), config.warmup))
                samplers.append(Sampler(f"triton sync {delay}us", batch,
                                        sync_client_call(triton.address, entry, faces), config.warmup))
            # short windows in turn, so load from elsewhere on the machine falls on every backend alike
            for _ in range(ROUNDS):
                for sampler in samplers:
                    sampler.sample(config.seconds / ROUNDS)
            timings += [sampler.timing() for sampler in samplers]
    print_table(timings, entry, config)
    return timings


def _stop(triton: TritonCommand) -> None:
    started = time.monotonic()
    code = triton.stop()
    print(f"swapstream triton stopped (exit {code}) in {time.monotonic() - started:.1f} s")


def print_table(timings: list[Timing], entry: ModelEntry, config: BenchConfig) -> None:
    print(f"\nmodel {entry.name} ({entry.inputs[0].tail}), ONNX Runtime CPU, {config.threads} thread(s), "
          f"{config.seconds:g} s per row")
    print(f"{'backend':<22} {'batch':>5} {'p50 ms':>8} {'p95 ms':>8} {'ms/face':>8} {'calls':>6}  added p50")
    baseline = {t.batch: t for t in timings if t.backend == "in-process"}
    for timing in sorted(timings, key=lambda t: (t.batch, t.backend != "in-process", t.backend)):
        added = "" if timing.backend == "in-process" else f"{timing.p50_ms - baseline[timing.batch].p50_ms:+.2f} ms"
        print(f"{timing.backend:<22} {timing.batch:>5} {timing.p50_ms:>8.2f} {timing.p95_ms:>8.2f} "
              f"{timing.ms_per_face:>8.2f} {timing.calls:>6}  {added}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    run_bench(parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
