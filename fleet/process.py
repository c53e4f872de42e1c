"""`swapstream triton` as a child process, for the tools that need a real Triton beside them (benchmarks, tests).

It runs the command as a user would (`python -m swapstream.cli triton ...`, its own process, its own ports),
waits for the log line saying every model is ready, and stops it with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

READY_LINE = "Triton ready in"
STOPPED_LINE = "Triton stopped cleanly"
REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on loopback right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def read_metrics(url: str) -> dict[tuple[str, str], float]:
    """Triton's per-model Prometheus metrics at `url`: (metric name as Triton spells it, model) -> value, summed
    over the other labels (e.g. `nv_inference_exec_count`; prometheus_client's sample names would add `_total`)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "model" in sample.labels:
                key = (family.name, sample.labels["model"])
                values[key] = values.get(key, 0.0) + float(sample.value)
    return values


class TritonCommand:
    """`swapstream triton --models DIR` on fixed free loopback ports; `start()` and `stop()` as often as needed."""

    def __init__(self, models_dir: Path, log_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.models_dir = models_dir
        self.grpc_port, self.http_port, self.metrics_port = free_ports(3)
        self.log_dir = log_dir
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / "triton-0.log"
        self.starts = 0
        self.startup_s = 0.0

    @property
    def address(self) -> str:
        """gRPC `host:port`."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def url(self) -> str:
        """What `swapstream serve --inference` takes."""
        return f"triton://{self.address}"

    @property
    def metrics_url(self) -> str:
        """Triton's Prometheus endpoint."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def running(self) -> bool:
        """Whether the command is running."""
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The command line this process runs."""
        return [sys.executable, "-m", "swapstream.cli", "triton", "--models", str(self.models_dir),
                "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
                "--metrics-port", str(self.metrics_port), *self.extra_args]

    def log(self) -> str:
        """Everything the current (or last) process printed."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout_s: float = 240.0) -> float:
        """Start the command; return its start-up seconds once it logs that every model is ready."""
        if self.running:
            raise RuntimeError("swapstream triton is already running")
        self.starts += 1
        self.log_path = self.log_dir / f"triton-{self.starts}.log"
        env = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            process = subprocess.Popen(self.command(), cwd=REPOSITORY_ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        self.process = process
        while READY_LINE not in self.log():
            if process.poll() is not None:
                raise RuntimeError(f"swapstream triton exited with {process.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() - started > timeout_s:
                self.kill()
                raise RuntimeError(f"swapstream triton was not ready within {timeout_s:g} s:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        self.startup_s = time.monotonic() - started
        return self.startup_s

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait for the exit; returns the exit code (-9 where it had to be killed)."""
        process = self.process
        if process is None or process.poll() is not None:
            raise RuntimeError("swapstream triton is not running")
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        """Last resort: SIGKILL the command (its tritonserver gets SIGTERM from the kernel as its parent dies)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def metrics(self) -> dict[tuple[str, str], float]:
        """Triton's per-model metrics now (see `read_metrics`)."""
        return read_metrics(self.metrics_url)
