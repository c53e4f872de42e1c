"""The live catalog: models join and leave atomically; a removed model that a frame still holds keeps its backend
until that frame lets go, then it is freed (real ONNX Runtime backends of hand-built models)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from stream_server.backends import InferenceBackend, load_models
from stream_server.batching import InferenceBatcher
from stream_server.catalog import ModelCatalog
from stream_server.errors import ConfigError, ModelLoadError
from stream_server.live_catalog import LiveCatalog, close_backends
from tests.fixtures.server import write_tiny_models

FACES = np.full((1, 3, 64, 64), 0.25, np.float32)


def test_a_removed_model_serves_the_frame_holding_it_and_is_freed_after(tiny_models_dir: Path,
                                                                         tmp_path: Path) -> None:
    manifest, backends = load_models(tiny_models_dir)
    job_manifest, job_backends = load_models(write_tiny_models(tmp_path / "job", prefix="job.", invert=False,
                                                               digits=False))
    retired: list[str] = []

    def retire(gone: Mapping[str, InferenceBackend]) -> None:
        retired.extend(gone)
        close_backends(gone)

    live = LiveCatalog(ModelCatalog(manifest.models, backends), on_retired=retire)
    try:
        first = live.current
        live.add(job_manifest.models, job_backends)
        assert live.current.names == (*first.names, "job.swap_a2b", "job.swap_b2a")
        assert first.names == ("swap_a2b", "swap_b2a", "digits")  # the old snapshot is unchanged
        with pytest.raises(ModelLoadError, match="repeat.*job.swap_a2b"):
            live.add(job_manifest.models[:1], {"job.swap_a2b": job_backends["job.swap_a2b"]})
        assert live.current.names[-1] == "job.swap_b2a"

        with live.use("job.swap_a2b") as model:  # a frame holds the model ...
            replacements = live.remove(["job.swap_a2b", "job.swap_b2a"])  # ... when its job is deleted
            assert replacements == {"job.swap_a2b": "a2b", "job.swap_b2a": "b2a"}
            assert live.current.names == first.names
            assert retired == ["job.swap_b2a"]  # nothing held it: freed at once
            np.testing.assert_allclose(job_backends[model.name].run(FACES)[0], 0.25)  # still serves this frame
            with live.use("job.swap_a2b") as late:  # a frame whose options still name it gets the replacement
                assert late.name == "swap_a2b"
        assert retired == ["job.swap_b2a", "job.swap_a2b"]
        with pytest.raises(RuntimeError, match="closed"):
            job_backends["job.swap_a2b"].run(FACES)
        with pytest.raises(ConfigError, match="not served: job.swap_a2b"):
            live.remove(["job.swap_a2b"])
        with pytest.raises(ConfigError, match="no swap model 'nobody'"):
            with live.use("nobody"):
                pass
    finally:
        live.close()
    with pytest.raises(RuntimeError, match="closed"):
        backends["swap_a2b"].run(FACES)


def test_frames_on_many_threads_while_models_come_and_go(tiny_models_dir: Path, tmp_path: Path) -> None:
    """Every frame gets a whole model that runs until its block ends; every removed backend is freed once."""
    manifest, backends = load_models(tiny_models_dir)
    job = write_tiny_models(tmp_path / "job", prefix="job.", invert=False, digits=False)
    closed: list[str] = []
    batcher = InferenceBatcher({name: backends[name] for name in ("swap_a2b", "swap_b2a")})

    def retire(gone: Mapping[str, InferenceBackend]) -> None:
        batcher.remove_backends(gone)
        closed.extend(gone)
        close_backends(gone)

    live = LiveCatalog(ModelCatalog(manifest.models, backends), on_retired=retire)
    failures: list[BaseException] = []
    stop = threading.Event()

    def frames(session: str) -> None:
        batcher.register(session)
        try:
            while not stop.is_set():
                with live.use("job.swap_a2b" if live.current.names[-1] == "job.swap_b2a" else "a2b") as model:
                    batcher.infer(model.name, FACES, session)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            batcher.unregister(session)

    threads = [threading.Thread(target=frames, args=(f"s{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(15):
            job_manifest, job_backends = load_models(job)
            batcher.add_backends(job_backends)
            live.add(job_manifest.models, job_backends)
            live.remove(job_manifest.names)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        batcher.close()
        live.close()
    assert not failures, failures
    assert closed.count("job.swap_a2b") == 15 and closed.count("job.swap_b2a") == 15
