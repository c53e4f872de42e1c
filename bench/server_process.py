"""`swapstream serve` in a child process, and what the kernel says about it (threads, open fds, RSS).

Used by bench/soak.py and by the teardown test: measuring the server's own /proc/<pid> keeps the clients'
threads, sockets and memory out of the figures.
"""

from __future__ import annotations

import json
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
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ProcessSample:
    """One look at a process: OS threads, open file descriptors, resident memory."""

    threads: int
    fds: int
    rss_mb: float


def sample_process(pid: int) -> ProcessSample:
    """Threads and RSS from /proc/<pid>/status, open fds from /proc/<pid>/fd."""
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    rss_kb = float(fields.get("VmRSS", "0 kB").split()[0])
    return ProcessSample(threads=int(fields["Threads"]), fds=len(os.listdir(f"/proc/{pid}/fd")),
                         rss_mb=rss_kb / 1024.0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """`python -m swapstream.cli serve ARGS --host 127.0.0.1 --port <free>`; a context manager.

    On entry it waits for /healthz; on exit it sends SIGTERM (a clean shutdown) and kills it after 30 s.
    The child's log goes to `log_path` (a file, so a long run never blocks on a full pipe).
    """

    def __init__(self, args: list[str], log_path: Path, startup_timeout_s: float = 120.0,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        self._command = [sys.executable, "-m", "swapstream.cli", "serve", *args,
                         "--host", "127.0.0.1", "--port", str(self.port)]
        self._env = {**os.environ, **(env or {}),
                     "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not running"
        return self._process.pid

    def __enter__(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(self._command, cwd=REPO, env=self._env, stdout=log,
                                             stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the server exited with {self._process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                self.healthz(timeout_s=1.0)
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the server did not answer /healthz within {self._startup_timeout_s:.0f} s")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def healthz(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The server's /healthz document."""
        with urllib.request.urlopen(self.url + "healthz", timeout=timeout_s) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document

    def metrics_text(self, headers: dict[str, str] | None = None, timeout_s: float = 5.0) -> str:
        """The server's /metrics exposition."""
        request = urllib.request.Request(self.url + "metrics", headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return str(response.read().decode())

    def sample(self) -> ProcessSample:
        """Threads, fds and RSS of the server process now."""
        return sample_process(self.pid)

    def sessions(self) -> int:
        """Live sessions, as /healthz reports them."""
        try:
            return int(self.healthz()["sessions"])
        except (OSError, urllib.error.URLError, KeyError, ValueError):
            return -1
