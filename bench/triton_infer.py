"""Inference ms per face and per batch through Triton against in-process ONNX Runtime, in one run.

Starts `swapstream triton` on the models (its own process, free loopback ports, the same ONNX Runtime thread count
as the in-process session) and times, per batch size, numpy in -> numpy out:
- `in-process`: ONNX Runtime in this process, as `swapstream serve` runs models today;
- `triton client`: stream_server.backends.triton.TritonInference.run from this (worker) thread: tritonclient's
  synchronous gRPC client, what `serve --inference triton://` will use;
- `triton aio+loop`: tritonclient's asyncio client on an event loop of its own thread, handed each request from
  this thread: the design the client did not take, to show what that thread hop costs.
Each Triton row states its added p50 over in-process at the same batch size. `--queue-delays 2000 0` repeats the
Triton rows with another dynamic-batcher delay (a lone request waits up to that long for company).

    PYTHONPATH=. .venv/bin/python bench/triton_infer.py --models models/demo
    PYTHONPATH=. .venv/bin/python bench/triton_infer.py --models models/demo --queue-delays 2000 0 --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet.process import TritonCommand  # noqa: E402
from stream_server.backends import load_backend, load_manifest  # noqa: E402
from swapstream.manifest import ModelEntry  # noqa: E402
from stream_server.backends.triton import TritonInference, channel_args  # noqa: E402
from swapstream.triton_model import MAX_QUEUE_DELAY_US, TRITON_DATATYPES, triton_model_name  # noqa: E402

log = logging.getLogger("bench.triton_infer")

ROUNDS = 4
SERVER_METRICS = ("nv_inference_exec_count", "nv_inference_request_success", "nv_inference_compute_infer_duration_us",
                  "nv_inference_queue_duration_us")


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
    mean_ms: float
    calls: int
    # Triton's own view (its metrics), for Triton rows: model compute per execution, queueing per request
    compute_ms: float | None = None
    queue_ms: float | None = None

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
    """Latency samples of one backend at one batch size, gathered over several short windows.

    With `server_metrics` (a Triton row) it also reads Triton's metrics around each window: how long the model
    itself ran per execution and how long requests queued, so the rest of the round trip is the hop.
    """

    def __init__(self, backend: str, batch: int, call: Callable[[], Any], warmup: int,
                 server_metrics: Callable[[], dict[tuple[str, str], float]] | None = None, model: str = "") -> None:
        self.backend, self.batch, self.call = backend, batch, call
        self.server_metrics, self.model = server_metrics, model
        self.samples: list[float] = []
        self.server: dict[str, float] = {}
        for _ in range(warmup):
            call()

    def sample(self, seconds: float) -> None:
        before = self.server_metrics() if self.server_metrics else {}
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            self.call()
            self.samples.append((time.perf_counter() - started) * 1000)
        if self.server_metrics:
            after = self.server_metrics()
            for metric in SERVER_METRICS:
                key = (metric, self.model)
                self.server[metric] = self.server.get(metric, 0.0) + after[key] - before.get(key, 0.0)

    def timing(self) -> Timing:
        p50, p95 = np.percentile(self.samples, [50, 95])
        compute = queue = None
        if self.server.get("nv_inference_exec_count"):
            compute = self.server["nv_inference_compute_infer_duration_us"] / self.server["nv_inference_exec_count"]
            queue = self.server["nv_inference_queue_duration_us"] / self.server["nv_inference_request_success"]
            compute, queue = compute / 1000, queue / 1000
        return Timing(self.backend, self.batch, float(p50), float(p95), float(np.mean(self.samples)),
                      len(self.samples), compute, queue)


class AioOnLoopThread:
    """tritonclient's asyncio client on its own event-loop thread, called from this thread (the road not taken)."""

    def __init__(self, address: str, entry: ModelEntry) -> None:
        self.entry = entry
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = self._wait(self._open(address))

    async def _open(self, address: str) -> Any:
        import tritonclient.grpc.aio as grpcaio

        return grpcaio.InferenceServerClient(address, channel_args=channel_args())

    def _wait(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _infer(self, faces: np.ndarray) -> list[np.ndarray]:
        import tritonclient.grpc as grpcclient

        spec = self.entry.inputs[0]
        request = grpcclient.InferInput(spec.name, list(faces.shape), TRITON_DATATYPES[spec.dtype])
        request.set_data_from_numpy(faces)
        result = await self.client.infer(triton_model_name(self.entry.name), [request], client_timeout=5.0)
        return [result.as_numpy(output.name) for output in self.entry.outputs]

    def run(self, faces: np.ndarray) -> list[np.ndarray]:
        return self._wait(self._infer(faces))  # type: ignore[no-any-return]

    def close(self) -> None:
        self._wait(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


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
            aio = AioOnLoopThread(triton.address, entry)
            stack.callback(aio.close)
            servers.append((delay, triton, connection, aio))
        for batch in config.batches:
            faces = inputs[batch]
            samplers = [Sampler("in-process", batch, lambda f=faces: local.run(f), config.warmup)]
            for delay, triton, connection, aio in servers:
                model = triton_model_name(entry.name)
                samplers.append(Sampler(f"triton client {delay}us", batch,
                                        lambda f=faces, c=connection: c.run(entry.name, f), config.warmup,
                                        triton.metrics, model))
                samplers.append(Sampler(f"triton aio+loop {delay}us", batch, lambda f=faces, a=aio: a.run(f),
                                        config.warmup, triton.metrics, model))
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
    print("added p50: over in-process at the same batch. Triton's own metrics (means): compute = the model's run per\n"
          "execution (for PyTriton's Python backend including the hand-over to the serving process and back),\n"
          "queue = waiting per request; hop = mean - compute - queue: gRPC and (de)serialisation.")
    print(f"{'backend':<22} {'batch':>5} {'p50 ms':>7} {'p95 ms':>7} {'ms/face':>7} {'calls':>6} {'added p50':>10} "
          f"{'compute':>8} {'queue':>6} {'hop':>6}")
    baseline = {t.batch: t for t in timings if t.backend == "in-process"}
    for timing in sorted(timings, key=lambda t: (t.batch, t.backend != "in-process", t.backend)):
        row = (f"{timing.backend:<22} {timing.batch:>5} {timing.p50_ms:>7.2f} {timing.p95_ms:>7.2f} "
               f"{timing.ms_per_face:>7.2f} {timing.calls:>6}")
        if timing.compute_ms is not None and timing.queue_ms is not None:
            hop = timing.mean_ms - timing.compute_ms - timing.queue_ms
            row += (f" {timing.p50_ms - baseline[timing.batch].p50_ms:>+10.2f} {timing.compute_ms:>8.2f} "
                    f"{timing.queue_ms:>6.2f} {hop:>6.2f}")
        print(row)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    run_bench(parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
