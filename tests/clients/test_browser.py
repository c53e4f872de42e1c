"""The browser page end to end in headless Chromium (Playwright drives Debian's /usr/bin/chromium).

Chromium's fake camera plays a synthetic face y4m; the page sends it to a real server and shows the swapped stream;
frames are grabbed from both <video> elements through a canvas and compared inside and outside the face (the
Digits tab's tests are in test_digits_page.py). A screenshot lands in test-artifacts/ when a test fails.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.browser

GRAB_FRAME_JS = """
(id) => {
  const video = document.getElementById(id);
  if (!video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas.toDataURL("image/png");
}
"""


def _decode_png_data_url(url: str) -> np.ndarray:
    data = base64.b64decode(url.split(",", 1)[1])
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def browser(face_y4m: Path) -> Iterator[Any]:
    """Headless Chromium with a fake camera that plays the synthetic face."""
    if not CHROMIUM.exists():
        print("SKIP reason: /usr/bin/chromium is missing (make browser installs Debian's chromium)")
        pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (make browser) to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={face_y4m}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def page_with_screenshot(browser: Any, name: str) -> Iterator[Any]:
    """A fresh page; on failure a screenshot goes to test-artifacts/<name>.png. Page errors fail the test."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
        assert not errors, f"JavaScript errors on the page: {errors}"
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            print(f"screenshot saved to {ARTIFACTS / (name + '.png')}")
        raise
    finally:
        page.close()


def _face_masks(face_frames_outlines: list[np.ndarray], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels inside the face in every frame, and pixels far from the face in every frame."""
    width, height = size
    inside = np.ones((height, width), bool)
    near = np.zeros((height, width), bool)
    for outline in face_frames_outlines:
        hull = np.zeros((height, width), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(outline).astype(np.int32)), 1)
        inside &= cv2.erode(hull, np.ones((9, 9), np.uint8)) > 0
        near |= cv2.dilate(hull, np.ones((41, 41), np.uint8)) > 0
    outside = ~near
    outside[:24, :200] = False  # the frame-code corner (unused here) and the AI mark corner are not "input"
    outside[int(height * 0.8):, int(width * 0.6):] = False
    return inside, outside


@pytest.mark.slow
def test_page_streams_the_camera_and_shows_a_swapped_face(browser: Any, inverting_server: Any, face_outlines: list) -> None:
    with page_with_screenshot(browser, "browser-stream") as page:
        page.goto(inverting_server.url)
        page.wait_for_function("document.body.dataset.models === 'loaded'", timeout=15_000)
        assert page.locator("#model option").count() >= 3  # "by direction" + the two swap models
        assert "AI-generated" in page.locator("#disclosure").inner_text()
        page.select_option("#resolution", "320x240")
        page.click("#start")
        page.wait_for_function(
            "(() => { const v = document.getElementById('remote'); return v.videoWidth > 0 && v.currentTime > 1.0; })()",
            timeout=40_000,
        )
        local = _decode_png_data_url(page.evaluate(GRAB_FRAME_JS, "local"))
        remote = _decode_png_data_url(page.evaluate(GRAB_FRAME_JS, "remote"))
        assert local.shape == remote.shape, (local.shape, remote.shape)
        inside, outside = _face_masks(face_outlines, (local.shape[1], local.shape[0]))
        assert inside.sum() > 500 and outside.sum() > 2000
        diff = np.abs(local.astype(np.int16) - remote.astype(np.int16)).mean(axis=2)
        inside_diff, outside_diff = float(diff[inside].mean()), float(diff[outside].mean())
        # The test models invert the face's colours: a big change inside, codec noise outside.
        assert inside_diff > 40, (inside_diff, outside_diff)
        assert outside_diff < 20, (inside_diff, outside_diff)
        # Live stats: the server's DataChannel reports stage times, getStats gives the received fps.
        page.wait_for_function("document.querySelectorAll('#stages tr').length > 0", timeout=10_000)
        assert page.locator("#stat-fps-in").inner_text() != "\u2013"
        # "Keep my mouth" (off by default) reaches this session's options over the control channel.
        session_id = page.evaluate("document.body.dataset.session")
        session = next(s for s in inverting_server.state.registry if s.id == session_id)
        assert not page.is_checked("#keep-mouth") and session.options.keep_mouth is False
        page.check("#keep-mouth")
        deadline = time.monotonic() + 10
        while not session.options.keep_mouth and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert session.options.keep_mouth is True
        # Watch mode (?watch=SESSION, what an OBS browser source shows): the same session through WHEP.
        viewer = browser.new_page()
        try:
            viewer.goto(f"{inverting_server.url}?watch={session_id}")
            viewer.wait_for_function(
                "(() => { const v = document.getElementById('remote'); return v.videoWidth > 0 && v.currentTime > 0.5; })()",
                timeout=20_000)
        finally:
            viewer.close()
        page.click("#stop")
        assert page.locator("#state").inner_text() == "idle"


@pytest.mark.slow
def test_send_audio_returns_the_microphone_muted_until_asked(browser: Any, inverting_server: Any) -> None:
    with page_with_screenshot(browser, "browser-audio") as page:
        page.goto(inverting_server.url)
        page.wait_for_function("document.body.dataset.models === 'loaded'", timeout=15_000)
        assert not page.is_checked("#send-audio") and not page.is_checked("#hear-returned")  # off by default
        page.select_option("#resolution", "320x240")
        page.check("#send-audio")
        page.click("#start")
        page.wait_for_function(
            "(() => { const v = document.getElementById('remote'); return v.srcObject && "
            "v.srcObject.getAudioTracks().length === 1 && v.currentTime > 1.0; })()", timeout=40_000)
        assert page.is_disabled("#send-audio")  # it applies from the next start
        # Chromium's fake microphone beeps: the sound goes through the server and back...
        session = next(iter(inverting_server.state.registry))
        deadline = time.monotonic() + 20
        while (session.audio is None or session.audio.forwarded < 50) and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert session.audio is not None and session.audio.forwarded >= 50
        # ...and plays only when asked (no echo of the user's own voice by default).
        assert page.evaluate("document.getElementById('remote').muted") is True
        page.check("#hear-returned")
        assert page.evaluate("document.getElementById('remote').muted") is False
        page.click("#stop")


def test_page_says_so_when_the_server_is_unreachable(browser: Any, inverting_server: Any) -> None:
    with page_with_screenshot(browser, "browser-unreachable") as page:
        page.route("**/api/models", lambda route: route.abort("connectionrefused"))
        page.goto(inverting_server.url)
        page.wait_for_function("document.body.dataset.models === 'failed'", timeout=10_000)
        message = page.locator("#message")
        assert message.is_visible()
        assert "unreachable" in message.inner_text()
