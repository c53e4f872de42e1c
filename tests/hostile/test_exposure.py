"""What the server exposes and to whom: binding without a token, /metrics and /api/* behind --token, the page's
token in the address bar, and the new flags themselves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stream_server.config import config_from_args
from stream_server.errors import ConfigError
from tests.hostile.harness import PROPOSED_FIELDS, HealthProbe, missing_proposed_fields, serving

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hostile-test-token"
CHROMIUM = Path("/usr/bin/chromium")


def test_the_proposed_flags_exist_with_their_defaults() -> None:
    assert not missing_proposed_fields(), f"ServerConfig lacks {missing_proposed_fields()}"
    defaults = config_from_args(["--pipeline", "echo"], environ={})
    for name, (_, default) in PROPOSED_FIELDS.items():
        assert getattr(defaults, name) == default, (name, getattr(defaults, name), default)
    config = config_from_args(["--pipeline", "echo", "--idle-timeout", "5", "--max-pixels", "1000000",
                               "--allowed-origin", "https://a.example", "--allowed-origin", "https://b.example",
                               "--public-metrics", "--body-timeout", "3", "--host", "0.0.0.0", "--allow-no-token"],
                              environ={})
    assert (config.idle_timeout_s, config.max_pixels, config.body_timeout_s) == (5.0, 1_000_000, 3.0)
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.public_metrics and config.allow_no_token
    from_env = config_from_args(["--pipeline", "echo"], environ={"SWAPSTREAM_IDLE_TIMEOUT": "7",
                                                                 "SWAPSTREAM_MAX_PIXELS": "2000000"})
    assert (from_env.idle_timeout_s, from_env.max_pixels) == (7.0, 2_000_000)
    for bad in (["--idle-timeout", "0"], ["--max-pixels", "100"], ["--allowed-origin", "not a url"],
                ["--body-timeout", "-1"]):
        with pytest.raises(ConfigError, match=bad[0]):
            config_from_args(["--pipeline", "echo", *bad], environ={})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_binding_a_public_address_without_a_token_is_refused() -> None:
    base = ["--pipeline", "echo"]
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        with pytest.raises(ConfigError, match="--allow-no-token") as refused:
            config_from_args([*base, "--host", host], environ={})
        assert "--token" in str(refused.value)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert config_from_args([*base, "--host", host], environ={}).host == host
    assert config_from_args([*base, "--host", "0.0.0.0", "--token", TOKEN], environ={}).token == TOKEN
    assert config_from_args([*base, "--host", "0.0.0.0", "--allow-no-token"], environ={}).token is None
    # What a user of `swapstream serve` (or the Docker image) sees: exit status 1 and the reason, nothing bound.
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SWAPSTREAM_TOKEN", None)
    result = subprocess.run([sys.executable, "-m", "swapstream.cli", "serve", *base, "--host", "0.0.0.0",
                             "--port", str(port)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert "--allow-no-token" in result.stderr and "Traceback" not in result.stderr, result.stderr


async def _status(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers) as response:
            return response.status, response.content_type


async def test_metrics_and_api_follow_the_token() -> None:
    with serving(pipeline="echo", token=TOKEN) as server:
        with HealthProbe(server.url) as health:
            closed = {path: await _status(server.url + path) for path in ("metrics", "api/models")}
            opened = {path: await _status(server.url + path, TOKEN) for path in ("metrics", "api/models")}
            wrong = await _status(server.url + "metrics", "guess")
            healthz = await _status(server.url + "healthz")
        assert closed == {"metrics": (401, "application/json"), "api/models": (401, "application/json")}, closed
        assert wrong[0] == 401
        assert {path: status for path, (status, _) in opened.items()} == {"metrics": 200, "api/models": 200}
        assert healthz[0] == 200  # health stays open for load balancers and Docker's HEALTHCHECK
        health.assert_responsive()
    with serving(pipeline="echo", token=TOKEN, public_metrics=True) as server:
        metrics = await _status(server.url + "metrics")
        models = await _status(server.url + "api/models")
    assert metrics[0] == 200 and models[0] == 401, (metrics, models)


@pytest.fixture(scope="module")
def plain_browser() -> Any:
    """Headless Debian chromium without a camera (the page's token handling needs none)."""
    if not CHROMIUM.exists():
        print("SKIP reason: /usr/bin/chromium is missing (make browser installs Debian's chromium)")
        pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.browser
def test_the_page_takes_the_token_out_of_the_address_bar_and_still_uses_it(plain_browser: Any) -> None:
    with serving(pipeline="echo", token=TOKEN) as server:
        page = plain_browser.new_page()
        authorized: list[str] = []
        page.on("request", lambda request: authorized.append(request.url)
                if request.headers.get("authorization") == f"Bearer {TOKEN}" else None)
        try:
            page.goto(f"{server.url}?token={TOKEN}&note=kept")
            page.wait_for_function("document.body.dataset.models === 'loaded'", timeout=15_000)
            search = page.evaluate("window.location.search")
            href = page.evaluate("window.location.href")
        finally:
            page.close()
    assert TOKEN not in href and "token" not in search, href
    assert search == "?note=kept", "other query parameters (such as ?watch=) must survive"
    assert any(url.endswith("/api/models") for url in authorized), authorized
