"""Prometheus text exposition (format 0.0.4), written by hand: counters, gauges and histograms, thread-safe."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence

STAGES: tuple[str, ...] = ("detect", "align", "infer", "blend", "encode")
# Milliseconds; a 15-30 fps stream leaves 33-67 ms per frame, so resolve finely below 100 ms.
LATENCY_BUCKETS_MS: tuple[float, ...] = (1, 2, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 250, 500, 1000, 2500)


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    escaped = (f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in pairs)
    return "{" + ",".join(escaped) + "}"


class Counter:
    """A monotonically increasing count."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help_text = name, help_text
        self._value = 0.0
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        return self._value

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} counter",
                f"{self.name} {_format_value(self._value)}"]


class Gauge:
    """A value that goes up and down (for example the live session count)."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help_text = name, help_text
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = float(value)

    @property
    def value(self) -> float:
        return self._value

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} gauge",
                f"{self.name} {_format_value(self._value)}"]


class Histogram:
    """Cumulative-bucket histogram of observations, optionally split by one label."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float], label: str | None = None) -> None:
        self.name, self.help_text, self.label = name, help_text, label
        self.buckets = tuple(sorted(buckets))
        self._series: dict[str, tuple[list[int], list[float]]] = {}  # label value -> (bucket counts, [sum, count])
        self._lock = threading.Lock()

    def observe(self, value: float, label_value: str = "") -> None:
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts, totals = self._series.setdefault(label_value, ([0] * (len(self.buckets) + 1), [0.0, 0.0]))
            counts[index] += 1
            totals[0] += value
            totals[1] += 1

    def count(self, label_value: str = "") -> int:
        with self._lock:
            series = self._series.get(label_value)
            return int(series[1][1]) if series else 0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        with self._lock:
            snapshot = {key: (list(c), list(t)) for key, (c, t) in self._series.items()}
        for label_value in sorted(snapshot):
            counts, (total, count) = snapshot[label_value]
            base = [(self.label, label_value)] if self.label else []
            running = 0
            for bound, n in zip(self.buckets, counts):
                running += n
                lines.append(f"{self.name}_bucket{_labels(base + [('le', _format_value(bound))])} {running}")
            lines.append(f"{self.name}_bucket{_labels(base + [('le', '+Inf')])} {int(count)}")
            lines.append(f"{self.name}_sum{_labels(base)} {_format_value(total)}")
            lines.append(f"{self.name}_count{_labels(base)} {int(count)}")
        return lines


class ServerMetrics:
    """The server's metrics; one instance per app (app[METRICS_KEY]), never a module global."""

    def __init__(self) -> None:
        self.sessions = Gauge("swapstream_sessions", "Live streaming sessions.")
        self.frames_in = Counter("swapstream_frames_in_total", "Video frames received from peers.")
        self.frames_out = Counter("swapstream_frames_out_total", "Processed video frames handed to encoders.")
        self.frames_dropped = Counter("swapstream_frames_dropped_total",
                                      "Incoming frames dropped because a newer one arrived before processing.")
        self.faces = Counter("swapstream_faces_swapped_total", "Faces swapped.")
        self.batches = Counter("swapstream_inference_batches_total", "Inference batches run.")
        self.batched_faces = Counter("swapstream_inference_batched_faces_total", "Faces inferred in batches.")
        self.stage_ms = Histogram("swapstream_stage_duration_ms", "Time per frame in each stage, milliseconds.",
                                  LATENCY_BUCKETS_MS, label="stage")
        self.added_ms = Histogram("swapstream_added_latency_ms",
                                  "Server-added latency per frame: decoded frame in -> processed frame encoded, ms.",
                                  LATENCY_BUCKETS_MS)

    def observe_stages(self, stage_ms: dict[str, float]) -> None:
        for stage, value in stage_ms.items():
            self.stage_ms.observe(value, stage)

    def render(self) -> str:
        parts: list[str] = []
        for metric in (self.sessions, self.frames_in, self.frames_out, self.frames_dropped, self.faces,
                       self.batches, self.batched_faces, self.stage_ms, self.added_ms):
            parts.extend(metric.render())
        return "\n".join(parts) + "\n"
