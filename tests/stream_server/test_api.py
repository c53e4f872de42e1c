"""GET /healthz, /metrics, /api/models and / against a running swap server (digits: test_digits_api.py)."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.server import RunningServer

pytestmark = pytest.mark.timeout(600)  # the first user of swap_server may train the tiny model


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            return response.status, response.content_type, await response.text()


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
