"""`swapstream triton` and `swapstream serve` as child processes, for the tools that need a real fleet beside them
(benchmarks, tests).

Each runs its command as a user would (`python -m swapstream.cli ...`, its own process, its own ports), waits until
it is ready (Triton: the log line saying every model is ready; serve: /healthz answering), and stops it with
SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

READY_LINE = "Triton ready in"
STOPPED_LINE = "Triton stopped cleanly"
REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


@dataclass(frozen=True)
class ProcessStat:
    """One process as /proc/<pid>/stat shows it."""

    pid: int
    parent: int
    state: str
    name: str
    cpu_s: float
    """User + system CPU seconds so far."""


def process_stats() -> dict[int, ProcessStat]:
    """Every process on this machine, by pid (from /proc; processes that end meanwhile are left out)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis
        fields = text[text.rindex(")") + 2:].split()
        stats[int(entry.name)] = ProcessStat(int(entry.name), int(fields[1]), fields[0],
                                             text[text.index("(") + 1:text.rindex(")")],
                                             (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return stats


def descendants(pid: int, stats: dict[int, ProcessStat]) -> list[ProcessStat]:
    """The processes below `pid` (children, their children, ...) among `stats`."""
    found: list[ProcessStat] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [stat for stat in stats.values() if stat.parent == parent]
        found += children
        frontier += [child.pid for child in children]
    return found


def read_metric_totals(url: str) -> dict[str, float]:
    """Every sample of the Prometheus text at `url`, by sample name (`swapstream_inference_batches_total`), summed
    over its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


class ChildCommand:
    """A `swapstream` command in a child process, its output in `log_dir`; `start()` and `stop()` as often as needed.

    Subclasses say what to run (`command()`) and when it is ready (`ready()`).
    """

    name = "swapstream"

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / f"{self.name}-0.log"
        self.starts = 0
        self.startup_s = 0.0
        self._launched_at = 0.0

    def command(self) -> list[str]:
        """The command line."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the started command is ready to use."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Whether the command is running."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        """The child's process id (RuntimeError if it was never started)."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process.pid

    def log(self) -> str:
        """Everything the current (or last) process printed."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def launch(self) -> None:
        """Start the command without waiting for it (then `wait_ready`)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        env = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
        self._launched_at = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), cwd=REPOSITORY_ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 240.0) -> float:
        """Wait until `ready()`; return the seconds since launch (RuntimeError with the log if it exits or times out)."""
        process = self.process
        if process is None:
            raise RuntimeError(f"{self.name} was never started")
        while not self.ready():
            if process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {process.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() - self._launched_at > timeout_s:
                self.kill()
                raise RuntimeError(f"{self.name} was not ready within {timeout_s:g} s:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        self.startup_s = time.monotonic() - self._launched_at
        return self.startup_s

    def start(self, timeout_s: float = 240.0) -> float:
        """Start the command; return its start-up seconds once it is ready."""
        self.launch()
        return self.wait_ready(timeout_s)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait for the exit; returns the exit code (-9 where it had to be killed)."""
        process = self.process
        if process is None or process.poll() is not None:
            raise RuntimeError(f"{self.name} is not running")
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        """Last resort: SIGKILL the command."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class ServeCommand(ChildCommand):
    """`swapstream serve --models DIR` on a free loopback port, plus `extra_args` (`--inference triton://...`)."""

    name = "serve"

    def __init__(self, models_dir: Path | None, log_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(log_dir)
        self.models_dir = models_dir
        self.port = free_ports(1)[0]
        self.name = f"serve-{self.port}"  # several servers may share a log folder
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        """The server's base URL, ending in "/"."""
        return f"http://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        """The command line this process runs."""
        models = ["--models", str(self.models_dir)] if self.models_dir is not None else []
        return [sys.executable, "-m", "swapstream.cli", "serve", *models, "--host", "127.0.0.1",
                "--port", str(self.port), *self.extra_args]

    def ready(self) -> bool:
        """/healthz answers (200, or 503 when full)."""
        try:
            with urllib.request.urlopen(self.url + "healthz", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        """The server's /metrics now, by sample name (see `read_metric_totals`)."""
        return read_metric_totals(self.url + "metrics")


class TritonCommand(ChildCommand):
    """`swapstream triton --models DIR` on fixed free loopback ports; `start()` and `stop()` as often as needed."""

    name = "triton"

    def __init__(self, models_dir: Path, log_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(log_dir)
        self.models_dir = models_dir
        self.grpc_port, self.http_port, self.metrics_port = free_ports(3)
        self.extra_args = extra_args

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

    def command(self) -> list[str]:
        """The command line this process runs."""
        return [sys.executable, "-m", "swapstream.cli", "triton", "--models", str(self.models_dir),
                "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
                "--metrics-port", str(self.metrics_port), *self.extra_args]

    def ready(self) -> bool:
        """The log says every model is ready."""
        return READY_LINE in self.log()

    def metrics(self) -> dict[tuple[str, str], float]:
        """Triton's per-model metrics now (see `read_metrics`)."""
        return read_metrics(self.metrics_url)
