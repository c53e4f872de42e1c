"""The settings of `swapstream triton`, built once from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleet.errors import ConfigError
from swapstream.triton_model import MAX_QUEUE_DELAY_US


@dataclass(frozen=True)
class TritonServeConfig:
    """What `swapstream triton` serves and where.

    models_dir: the exported models folder (`manifest.json`); every model in it is served.
    host: the address all three endpoints bind to (loopback unless told otherwise).
    grpc_port / http_port / metrics_port: Triton's gRPC, HTTP/REST and Prometheus ports.
    max_batch: the largest batch each model takes; None: as `export --triton`'s repository says where it exists
        (`MODELS/triton/<model>/config.pbtxt`), else swapstream's default.
    max_queue_delay_us: how long Triton's dynamic batcher may hold a request to gather a batch.
    threads: ONNX Runtime intra-op threads per model (in tritonserver's Python backend); None: one per CPU core
        (the machine serves inference only).
    ready_timeout_s: how long the models may take to become ready before the command gives up.
    """

    models_dir: Path
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    max_batch: int | None = None
    max_queue_delay_us: int = MAX_QUEUE_DELAY_US
    threads: int | None = None
    ready_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        ports = {"--grpc-port": self.grpc_port, "--http-port": self.http_port, "--metrics-port": self.metrics_port}
        for flag, port in ports.items():
            if not 0 < port < 65536:
                raise ConfigError(f"{flag} must be a TCP port (1-65535), got {port}")
        if len(set(ports.values())) != len(ports):
            raise ConfigError(f"--grpc-port, --http-port and --metrics-port must differ, got {ports}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ConfigError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.max_queue_delay_us < 0:
            raise ConfigError(f"--max-queue-delay-us must not be negative, got {self.max_queue_delay_us}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.ready_timeout_s <= 0:
            raise ConfigError(f"--ready-timeout must be positive, got {self.ready_timeout_s}")
        if not self.host:
            raise ConfigError("--host must not be empty")

    @property
    def client_host(self) -> str:
        """Where a client on this machine reaches the server (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
