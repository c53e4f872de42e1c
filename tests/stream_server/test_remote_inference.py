"""`swapstream serve --inference triton://` against a real `swapstream triton`: the start-up check, sessions swapping
through Triton, and what sessions get while the network to Triton is cut (faces unswapped and told so, or the
local fallback) and after it is back."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fleet.process import free_ports, read_metric_totals
from stream_server.app import create_app
from stream_server.config import ServerConfig, config_from_args
from stream_server.errors import ConfigError, TritonModelError, TritonUnavailable
from tests.fixtures.server import Clip, RunningServer, start_server
from tests.fixtures.triton import TritonProcess
from tests.stream_server.peer import open_offer_peer
from tests.stream_server.swapped import UNSWAPPED_FACE_ERROR, FaceWatch, median_error, watch
from tests.stream_server.tcp_relay import TcpRelay

pytestmark = pytest.mark.timeout(600)  # the first user of the export fixture may train the tiny model
RECOVERY_S = 5.0


def test_inference_flags_and_their_variables(tmp_path: Path, tiny_models_dir: Path) -> None:
    models = ["--models", str(tiny_models_dir)]
    config = config_from_args([*models, "--inference", "triton://triton:9001", "--inference-fallback", "local"], {})
    assert (config.inference, config.inference_fallback, config.remote_inference) == ("triton://triton:9001",
                                                                                       "local", True)
    from_env = config_from_args(models, {"SWAPSTREAM_INFERENCE": "triton://10.0.0.5"})
    assert from_env.inference == "triton://10.0.0.5" and from_env.inference_fallback == "none"
    assert config_from_args(models, {}).remote_inference is False
    with pytest.raises(ConfigError, match=re.escape("--inference http://triton:8001: expected triton://HOST:PORT")):
        config_from_args([*models, "--inference", "http://triton:8001"], {})
    with pytest.raises(ConfigError, match="--inference-fallback local needs --inference triton://"):
        config_from_args([*models, "--inference-fallback", "local"], {})


def _manifest_renamed(source: Path, folder: Path, prefix: str) -> Path:
    """A copy of `source`'s models whose swap models carry other names (Triton serves none of them)."""
    shutil.copytree(source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["models"]:
        if entry["kind"] == "swap":
            entry["name"] = prefix + entry["name"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_start_needs_every_swap_model_ready_on_triton(triton_server: TritonProcess, exported_models: Path,
                                                      tiny_models_dir: Path, tmp_path: Path) -> None:
    if not triton_server.running:
        triton_server.start()
    renamed = _manifest_renamed(exported_models, tmp_path / "renamed", "other_")
    with pytest.raises(TritonModelError, match=rf"Triton at {re.escape(triton_server.url)} does not serve the "
                                               r"manifest's models: not ready \(or not there\): other_swap_a2b, "
                                               r"other_swap_b2a"):
        create_app(ServerConfig(models_dir=renamed, inference=triton_server.url))
    # the same names, other files: a new export that Triton was not restarted on
    with pytest.raises(TritonModelError, match=r"swap_a2b serves a file with sha256 [0-9a-f]{64}, the manifest's "
                                               r"swap_a2b.onnx has"):
        create_app(ServerConfig(models_dir=tiny_models_dir, inference=triton_server.url))
    nobody = f"triton://127.0.0.1:{free_ports(1)[0]}"
    started = time.monotonic()
    with pytest.raises(TritonUnavailable, match=rf"--inference {re.escape(nobody)}: no Triton answers there"):
        create_app(ServerConfig(models_dir=exported_models, inference=nobody))
    assert time.monotonic() - started < 5


def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _inference_errors(messages: list[dict[str, Any]]) -> list[str]:
    return [m["message"] for m in messages if m.get("type") == "error" and "inference unavailable" in m["message"]]


async def test_sessions_outlive_a_cut_to_triton(triton_server: TritonProcess, exported_models: Path,
                                                server_clip: Clip) -> None:
    """Two servers reach Triton through a relay that is cut for a few seconds: the plain one keeps streaming with
    faces unswapped (an error event, rate-limited, and a counter) and swaps again within 5 s of the relay's return;
    the one with --inference-fallback local keeps swapping in-process."""
    if not triton_server.running:
        triton_server.start()
    relay = TcpRelay("127.0.0.1", triton_server.grpc_port)
    url = f"triton://{relay.address}"
    servers: list[RunningServer] = []
    peers = []
    try:
        for fallback in ("none", "local"):
            servers.append(start_server(pipeline="swap", models_dir=exported_models, inference=url,
                                        inference_fallback=fallback, max_sessions=2))
        plain, with_fallback = servers
        status, health = _get_json(plain.url + "healthz")
        assert status == 200 and health["inference"] == url and health["inference_available"] is True
        assert f"Triton {relay.address}" in health["provider"]
        peers = [await open_offer_peer(s.url, server_clip.frames, server_clip.fps, start_index=300 * k)
                 for k, s in enumerate(servers)]
        watches = [FaceWatch(server_clip, peer, 300 * k) for k, peer in enumerate(peers)]
        assert await watch(watches, 40, until=lambda: all(len(w.verdicts) >= 10 for w in watches))
        for face_watch in watches:
            assert all(v.swapped for v in face_watch.verdicts[-5:]), face_watch.verdicts
        served = [read_metric_totals(s.url + "metrics")["swapstream_inference_batches_total"] for s in servers]
        assert min(served) > 0, served

        relay.cut()
        cut_at = time.monotonic()
        await watch(watches, 4.0)
        during = [w.since(cut_at + 0.5) for w in watches]
        assert all(len(frames) >= 10 for frames in during), [len(f) for f in during]
        assert median_error(during[0]) < UNSWAPPED_FACE_ERROR, during[0]
        assert all(v.swapped for v in during[1]), "the fallback server stopped swapping"
        notices = _inference_errors(peers[0].messages)
        assert 1 <= len(notices) <= 2, notices  # one at once, then at most one per 5 s
        assert relay.address in notices[0]
        assert not _inference_errors(peers[1].messages)
        for server in servers:
            assert read_metric_totals(server.url + "metrics")["swapstream_inference_unavailable_total"] > 0
        status, health = _get_json(plain.url + "healthz")
        assert status == 200 and health["inference_available"] is False

        relay.restore()
        back_at = time.monotonic()
        assert await watch(watches[:1], RECOVERY_S + 2, until=lambda: watches[0].first_swapped_after(back_at)
                           is not None)
        recovered_at = watches[0].first_swapped_after(back_at)
        assert recovered_at is not None and recovered_at - back_at < RECOVERY_S, recovered_at - back_at
        again = read_metric_totals(with_fallback.url + "metrics")["swapstream_inference_batches_total"]
        assert await asyncio.to_thread(lambda: _wait_more_batches(with_fallback, again, 5.0))
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))
        for server in servers:
            server.stop()
        relay.close()


def _wait_more_batches(server: RunningServer, before: float, seconds: float) -> bool:
    """Whether the server's Triton requests grow past `before` within `seconds` (Triton answers it again)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if read_metric_totals(server.url + "metrics")["swapstream_inference_batches_total"] > before:
            return True
        time.sleep(0.2)
    return False
