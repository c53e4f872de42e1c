"""Stopping `swapstream triton` with SIGTERM leaves nothing behind, a client meanwhile gets a quick, typed
"unreachable" error, and the same client object works again once Triton is back."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from stream_server.backends import load_manifest
from stream_server.backends.triton import TritonInference
from stream_server.errors import TritonUnavailable
from tests.fixtures.triton import STOPPED_LINE, TritonProcess

RECOVERY_S = 5.0


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_clients_recover(triton_server: TritonProcess, exported_models: Path) -> None:
    face = np.random.default_rng(5).random((2, 3, 64, 64), dtype=np.float32)
    client = TritonInference(triton_server.url, load_manifest(exported_models).models, timeout_s=1.0)
    try:
        client.check()
        expected = client.run("swap_a2b", face)

        report = triton_server.stop_and_report()
        assert report.returncode == 0, report.log[-3000:]
        assert STOPPED_LINE in report.log
        assert report.tritonservers_before, "no tritonserver child was running: the check below proves nothing"
        assert report.tritonservers_left == []
        assert report.shm_before, "no PyTriton shared memory was seen: the check below proves nothing"
        assert report.shm_left == [], f"left in /dev/shm: {report.shm_left}"

        started = time.monotonic()
        with pytest.raises(TritonUnavailable, match=triton_server.address):
            client.run("swap_a2b", face)
        assert time.monotonic() - started < 1.5
        fresh = TritonInference(triton_server.url, load_manifest(exported_models).models)
        try:
            with pytest.raises(TritonUnavailable):
                fresh.check()
        finally:
            fresh.close()

        triton_server.start()
        back = time.monotonic()
        while True:
            try:
                again = client.run("swap_a2b", face)
                break
            except TritonUnavailable:
                assert time.monotonic() - back < RECOVERY_S, "the client did not reconnect within 5 s"
                time.sleep(0.05)
        for before, after in zip(expected, again):
            np.testing.assert_array_equal(before, after)
    finally:
        client.close()
