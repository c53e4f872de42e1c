"""GET /healthz, /metrics, /api/models, /, and POST /api/digits against a running swap server."""

from __future__ import annotations

import json
import re

import aiohttp
import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_server.api import softmax
from tests.fixtures.server import RunningServer

pytestmark = pytest.mark.timeout(600)  # the first user of swap_server may train the tiny model


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            return response.status, response.content_type, await response.text()


async def _post(url: str, **kwargs: object) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, **kwargs) as response:  # type: ignore[arg-type]
            return response.status, await response.json()


async def test_healthz_reports_models_provider_and_sessions(swap_server: RunningServer) -> None:
    status, content_type, text = await _get(swap_server.url + "healthz")
    body = json.loads(text)
    assert status == 200 and content_type == "application/json"
    assert body["status"] == "ok" and body["pipeline"] == "swap"
    assert body["jitter_buffer"] == swap_server.state.config.jitter_buffer == "marker"
    assert {"swap_a2b", "swap_b2a", "digits"} <= set(body["models"])
    assert "CPUExecutionProvider" in body["provider"]
    assert body["sessions"] == len(swap_server.state.registry)


async def test_models_lists_the_manifest(swap_server: RunningServer) -> None:
    status, _, text = await _get(swap_server.url + "api/models")
    body = json.loads(text)
    assert status == 200
    kinds = {m["name"]: m["kind"] for m in body["models"]}
    assert kinds["swap_a2b"] == "swap" and kinds["digits"] == "digits"
    assert {m["direction"] for m in body["models"] if m["kind"] == "swap"} == {"a2b", "b2a"}
    assert body["defaults"]["model"] == "a2b" and body["defaults"]["swap"] is True


async def test_metrics_is_prometheus_text(swap_server: RunningServer) -> None:
    swap_server.state.metrics.observe_stages({"detect": 3.0})
    status, content_type, text = await _get(swap_server.url + "metrics")
    assert status == 200 and content_type == "text/plain"
    for name in ("swapstream_sessions", "swapstream_frames_in_total", "swapstream_frames_out_total",
                 "swapstream_frames_dropped_total", "swapstream_added_latency_ms"):
        assert re.search(rf"^# TYPE {name} (gauge|counter|histogram)$", text, re.M), name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("swapstream_stage_duration_ms_bucket", (("le", "5.0"), ("stage", "detect")))] >= 1
    assert samples[("swapstream_stage_duration_ms_count", (("stage", "detect"),))] >= 1
    # Every sample line parses as `name{labels} value`.
    for line in text.splitlines():
        if not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{[^}]*\})? [-+0-9.eInf]+', line), line


async def test_index_page_is_served(swap_server: RunningServer) -> None:
    status, content_type, text = await _get(swap_server.url)
    assert status == 200 and content_type == "text/html"
    assert "<html" in text.lower() and "swapstream" in text.lower()
    for asset in re.findall(r'(?:src|href)="(static/[^"]+)"', text):
        status, _, _ = await _get(swap_server.url + asset)
        assert status == 200, asset


def _expected_probabilities(server: RunningServer, pixels: np.ndarray) -> np.ndarray:
    backend = server.state.backends["digits"]
    return softmax(np.asarray(backend.run(pixels.reshape(1, 256).astype(np.float32))[0], np.float64).reshape(-1))


async def test_digits_json_rows_flat_and_png_agree(swap_server: RunningServer) -> None:
    image = np.zeros((16, 16), np.float32)
    cv2.line(image, (8, 2), (8, 13), 1.0, 2)  # a "1", ink bright on dark
    expected = _expected_probabilities(swap_server, image)
    status, rows = await _post(swap_server.url + "api/digits", json=image.tolist())
    assert status == 200, rows
    assert rows["digit"] == int(np.argmax(expected))
    np.testing.assert_allclose(rows["probabilities"], expected, atol=1e-5)
    assert abs(sum(rows["probabilities"]) - 1.0) < 1e-4 and len(rows["probabilities"]) == 10
    status, flat = await _post(swap_server.url + "api/digits", json=image.reshape(-1).tolist())
    assert status == 200 and flat["digit"] == rows["digit"]
    # The same digit drawn dark on white at 64x64, as a drawing pad would send it.
    paper = np.full((64, 64), 255, np.uint8)
    cv2.line(paper, (32, 8), (32, 55), 0, 8)
    png = cv2.imencode(".png", paper)[1].tobytes()
    status, from_png = await _post(swap_server.url + "api/digits", data=png, headers={"Content-Type": "image/png"})
    assert status == 200, from_png
    # Dark ink on light paper is inverted to the model's ink-bright convention and shrunk to 16x16.
    ink_bright = cv2.resize(1.0 - paper.astype(np.float32) / 255.0, (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(from_png["probabilities"], _expected_probabilities(swap_server, ink_bright),
                               atol=1e-4)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"json": [[0.0] * 15] * 16}, "16 lists of 16"),
        ({"json": [0.5] * 255}, "256 numbers"),
        ({"json": ["a"] * 256}, "numbers"),
        ({"json": [-1.0] * 256}, ">= 0"),
        ({"data": b"[1,2", "headers": {"Content-Type": "application/json"}}, "not valid JSON"),
        ({"data": b"\x89PNG not really", "headers": {"Content-Type": "image/png"}}, "PNG"),
    ],
)
async def test_digits_bad_input_is_a_400_with_a_message(swap_server: RunningServer, body: dict,
                                                         expected: str) -> None:
    status, reply = await _post(swap_server.url + "api/digits", **body)
    assert status == 400 and expected in reply["error"], reply
