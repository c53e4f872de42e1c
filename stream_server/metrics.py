"""The server's Prometheus metrics (prometheus-client), in a registry of each app's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from stream_server.frames import StageTimes

# Milliseconds; a 15-30 fps stream leaves 33-67 ms per frame, so resolve finely below 100 ms.
LATENCY_BUCKETS_MS: tuple[float, ...] = (1, 2, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 250, 500, 1000, 2500)
EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The Content-Type of `render()`'s text (Prometheus text format 0.0.4)."""


class ServerMetrics:
    """The server's metrics; one instance per app (ServerState.metrics), each with its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.sessions = Gauge("swapstream_sessions", "Live streaming sessions.", registry=registry)
        self.frames_in = Counter("swapstream_frames_in_total", "Video frames received from peers.",
                                 registry=registry)
        self.frames_out = Counter("swapstream_frames_out_total", "Processed video frames handed to encoders.",
                                  registry=registry)
        self.frames_dropped = Counter("swapstream_frames_dropped_total",
                                      "Incoming frames dropped because a newer one arrived before processing.",
                                      registry=registry)
        self.faces = Counter("swapstream_faces_swapped_total", "Faces swapped.", registry=registry)
        self.batches = Counter("swapstream_inference_batches_total", "Inference batches run.", registry=registry)
        self.batched_faces = Counter("swapstream_inference_batched_faces_total", "Faces inferred in batches.",
                                     registry=registry)
        self.inference_unavailable = Counter(
            "swapstream_inference_unavailable_total",
            "Inference requests the inference service (Triton) did not answer or refused; their faces went out "
            "unswapped, or through --inference-fallback local.", registry=registry)
        self.stage_ms = Histogram("swapstream_stage_duration_ms", "Time per frame in each stage, milliseconds.",
                                  ["stage"], buckets=LATENCY_BUCKETS_MS, registry=registry)
        self.added_ms = Histogram("swapstream_added_latency_ms",
                                  "Server-added latency per frame: decoded frame in -> processed frame encoded, ms.",
                                  buckets=LATENCY_BUCKETS_MS, registry=registry)

    def observe_stages(self, stage_ms: StageTimes) -> None:
        """One frame's time in each stage it passed."""
        for stage, value in stage_ms.items():
            self.stage_ms.labels(stage=stage).observe(value)

    def frame_sent(self, encode_ms: float, added_ms: float) -> None:
        """An outgoing track's encoder sent a processed frame."""
        self.frames_out.inc()
        self.stage_ms.labels(stage="encode").observe(encode_ms)
        self.added_ms.observe(added_ms)

    def batch_run(self, faces: int) -> None:
        """One batch of `faces` faces ran: the in-process batcher's, or one request Triton answered."""
        self.batches.inc()
        self.batched_faces.inc(faces)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
