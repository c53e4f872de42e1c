"""Micro-batching across sessions with a real ONNX Runtime backend (the hand-built colour-inversion model)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stream_server.batching import InferenceBatcher
from stream_server.backends import load_backend
from swapstream.manifest import read_manifest

pytestmark = pytest.mark.timeout(60)


class RecordingBackend:
    """A real backend that also records the batch sizes it was called with."""

    def __init__(self, models_dir: Path, name: str) -> None:
        entry = read_manifest(models_dir).resolve(name)
        self.backend = load_backend(entry, models_dir)
        self.batch_sizes: list[int] = []

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.batch_sizes.append(len(batch))
        return self.backend.run(batch)


def _faces(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 64, 64), dtype=np.float32)


def _in_thread(fn, *args):  # type: ignore[no-untyped-def]
    result: dict[str, object] = {}

    def target() -> None:
        started = time.perf_counter()
        result["value"] = fn(*args)
        result["seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def test_a_single_session_never_waits(tiny_models_dir: Path) -> None:
    backend = RecordingBackend(tiny_models_dir, "swap_a2b")
    batcher = InferenceBatcher({"swap_a2b": backend}, max_wait_ms=300.0)
    try:
        batcher.register("only")
        batcher.infer("swap_a2b", _faces(1, 0), "only")  # warm-up
        started = time.perf_counter()
        rgb, mask = batcher.infer("swap_a2b", _faces(2, 1), "only")
        elapsed = time.perf_counter() - started
    finally:
        batcher.close()
    assert elapsed < 0.15, f"one live session waited {elapsed * 1000:.0f} ms for others"
    np.testing.assert_allclose(rgb, 1.0 - _faces(2, 1), atol=1e-6)
    assert mask.shape == (2, 1, 64, 64)


def test_faces_ready_together_run_as_one_batch_and_come_back_to_their_session(tiny_models_dir: Path) -> None:
    backend = RecordingBackend(tiny_models_dir, "swap_a2b")
    batcher = InferenceBatcher({"swap_a2b": backend}, max_wait_ms=500.0)
    try:
        for session in ("s1", "s2", "s3"):
            batcher.register(session)
        work = [(session, _faces(n, seed)) for session, n, seed in (("s1", 1, 10), ("s2", 2, 11), ("s3", 1, 12))]
        runs = [_in_thread(batcher.infer, "swap_a2b", faces, session) for session, faces in work]
        for thread, _ in runs:
            thread.join(10)
    finally:
        batcher.close()
    assert backend.batch_sizes == [4], backend.batch_sizes
    for (_, faces), (_, result) in zip(work, runs):
        rgb, _mask = result["value"]  # type: ignore[misc]
        np.testing.assert_allclose(rgb, 1.0 - faces, atol=1e-6)


def test_the_wait_for_other_sessions_is_bounded(tiny_models_dir: Path) -> None:
    backend = RecordingBackend(tiny_models_dir, "swap_a2b")
    batcher = InferenceBatcher({"swap_a2b": backend}, max_wait_ms=2.0)
    try:
        batcher.register("talker")
        batcher.register("silent")  # live, but its frame has no face: it never submits
        batcher.infer("swap_a2b", _faces(1, 0), "talker")  # warm-up
        timings = []
        for seed in range(20):
            started = time.perf_counter()
            batcher.infer("swap_a2b", _faces(1, seed), "talker")
            timings.append(time.perf_counter() - started)
    finally:
        batcher.close()
    # 2 ms of waiting plus a tiny model's run; generous for a shared 2-core machine.
    assert float(np.median(timings)) < 0.02, timings
    assert backend.batch_sizes == [1] * 21


def test_models_are_not_mixed_and_errors_reach_the_caller(tiny_models_dir: Path) -> None:
    a2b = RecordingBackend(tiny_models_dir, "swap_a2b")
    b2a = RecordingBackend(tiny_models_dir, "swap_b2a")
    batcher = InferenceBatcher({"swap_a2b": a2b, "swap_b2a": b2a}, max_wait_ms=200.0)
    try:
        batcher.register("x")
        batcher.register("y")
        runs = [_in_thread(batcher.infer, "swap_a2b", _faces(1, 1), "x"),
                _in_thread(batcher.infer, "swap_b2a", _faces(1, 2), "y")]
        for thread, _ in runs:
            thread.join(10)
        assert a2b.batch_sizes == [1] and b2a.batch_sizes == [1]
        with pytest.raises(Exception, match="face"):
            batcher.infer("swap_a2b", np.zeros((1, 3, 32, 32), np.float32), "x")  # wrong crop size
        with pytest.raises(KeyError):
            batcher.infer("nope", _faces(1, 0), "x")
    finally:
        batcher.close()
