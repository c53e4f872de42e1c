"""The Studio tab end to end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Chromium's fake camera plays a synthetic face (y4m); the page records it with MediaRecorder as source A, a
synthetic video of B is uploaded as the target, consent is given, and the job runs on the real server with the
micro recipe: progress events arrive, the preview renders, the new model appears in the Live swap tab's list
(with the people's names) without a restart, "Use this model" switches the running live session to it over the
control channel, and the faces that come back change: before, the server's hand-built model inverts the face's
colours; after, they are the new model's.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.clients.test_browser import CHROMIUM, GRAB_FRAME_JS, _decode_png_data_url, _face_masks, page_with_screenshot
from tests.studio.conftest import StudioMedia, StudioServer, studio_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]


CAMERA_SIZE = (320, 240)


@dataclass(frozen=True)
class Camera:
    """The fake camera's clip and the pixels inside the face in every one of its frames."""

    y4m: Path
    face: np.ndarray


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Camera:
    """Three seconds of synthetic identity A turning and talking, looped by Chromium's fake camera."""
    from faces.media import write_y4m
    from faces.synthetic import IDENTITY_A, render_sequence

    rendered = render_sequence(IDENTITY_A, 45, size=CAMERA_SIZE, seed=5, fps=15.0)
    frames = [r.frame for r in rendered]
    y4m = write_y4m(tmp_path_factory.mktemp("studio_camera") / "camera.y4m", frames + frames[-2:0:-1], fps=15.0)
    return Camera(y4m, _face_masks([r.outline for r in rendered], CAMERA_SIZE)[0])


@pytest.fixture
def chromium(camera: Camera) -> Iterator[Any]:
    """Headless Chromium whose fake camera plays the synthetic face."""
    if not CHROMIUM.exists():
        print("SKIP reason: /usr/bin/chromium is missing (make browser installs Debian's chromium)")
        pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream",
             "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={camera.y4m}",
             "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        try:
            yield browser
        finally:
            browser.close()


def test_record_upload_consent_train_preview_and_use_the_new_model_live(
    start_studio: Any, chromium: Any, studio_media: StudioMedia, micro_base: Path, tiny_models_dir: Path,
    camera: Camera, tmp_path: Path
) -> None:
    server: StudioServer = start_studio(studio_config(tmp_path / "studio", base=micro_base), pipeline="swap",
                                        models_dir=tiny_models_dir)
    with page_with_screenshot(chromium, "studio-tab") as page:
        _train_in_the_page(page, server, studio_media, tmp_path)
        _use_the_new_model_live(page, camera)


def _train_in_the_page(page: Any, server: StudioServer, studio_media: StudioMedia, tmp_path: Path) -> None:
    page.goto(server.url)
    page.wait_for_function("document.body.dataset.models === 'loaded'", timeout=15_000)
    page.click("#tab-studio")
    panel = page.locator("#panel-studio")
    assert panel.is_visible()
    start = page.locator("#studio-start")
    assert start.is_disabled()

    # Source A from the camera: countdown, prompts while recording, stopped after a few seconds
    page.click("#studio-record")
    page.wait_for_selector("#panel-studio[data-recording=on]", timeout=20_000)
    page.wait_for_function("document.getElementById('studio-prompt').textContent.length > 0")
    page.wait_for_timeout(4500)
    page.click("#studio-record-stop")
    page.wait_for_selector("#panel-studio[data-recording=done]", timeout=20_000)
    assert page.locator("#studio-list-a li").count() == 1
    assert ".webm" in page.locator("#studio-list-a li").inner_text()

    # Target B, then consent: Start stays off until both are given
    page.set_input_files("#studio-files-b", str(studio_media.video_b))
    page.fill("#studio-name", "Browser Pair")
    assert start.is_disabled()
    page.check("#studio-agree")
    page.fill("#studio-people", "Synthetic A, Synthetic B")
    assert start.is_enabled()
    page.click("#studio-start")

    # progress events arrive, the preview renders, the job finishes with its models
    page.wait_for_selector("#panel-studio[data-job-state=training]", timeout=240_000)
    page.wait_for_selector("#panel-studio[data-preview=loaded]", timeout=240_000)
    page.wait_for_selector("#panel-studio[data-job-state=done]", timeout=240_000)
    assert page.locator("#studio-use").is_visible()
    width = page.eval_on_selector("#studio-preview", "img => img.naturalWidth")
    assert width == 4 * 64
    jobs = server.service.jobs()
    assert len(jobs) == 1 and jobs[0]["models"] == ["browser-pair.swap_a2b", "browser-pair.swap_b2a"]
    assert jobs[0]["consent"]["people"] == ["Synthetic A", "Synthetic B"]
    assert jobs[0]["faces"]["a"] >= 8  # Chromium's WebM recording is readable by extract
    assert server.served()[-2:] == jobs[0]["models"]

    # the Live swap tab lists the new model, with the people it shows, without a restart or a reload
    option = page.locator('#model option[value="browser-pair.swap_a2b"]')
    option.wait_for(state="attached", timeout=10_000)
    assert option.inner_text() == "browser-pair.swap_a2b (a2b): Synthetic A, Synthetic B"


def _inversion_errors(page: Any, face: np.ndarray, grabs: int) -> list[float]:
    """Per grab: mean |returned - (255 - camera)| inside the face (small while the served model inverts it)."""
    errors = []
    for _ in range(grabs):
        local, remote = (cv2.resize(_decode_png_data_url(page.evaluate(GRAB_FRAME_JS, video)), CAMERA_SIZE)
                         for video in ("local", "remote"))
        inverted = 255 - local.astype(np.int16)
        errors.append(float(np.abs(remote.astype(np.int16) - inverted).mean(axis=2)[face].mean()))
        page.wait_for_timeout(300)
    return errors


def _use_the_new_model_live(page: Any, camera: Camera) -> None:
    # a live session on the server's colour-inverting models; no colour transfer, so each model's output shows
    page.click("#tab-stream")
    page.select_option("#color", "none")
    page.select_option("#resolution", "320x240")
    page.click("#start")
    page.wait_for_function(
        "(() => { const v = document.getElementById('remote'); return v.videoWidth > 0 && v.currentTime > 1.5; })()",
        timeout=60_000)
    before = _inversion_errors(page, camera.face, grabs=5)

    # "Use this model" in the Studio tab switches the live session over the control channel
    page.click("#tab-studio")
    page.click("#studio-use")
    page.wait_for_selector('body[data-model="browser-pair.swap_a2b"]', timeout=20_000)  # the server's answer
    assert page.locator("#panel-stream").is_visible()
    assert page.locator("#model").input_value() == "browser-pair.swap_a2b"
    page.wait_for_timeout(2000)  # frames already under way still carry the old model
    after = _inversion_errors(page, camera.face, grabs=5)
    print(f"mean |returned - inverted camera| in the face: before the switch {before}, after {after}")
    # measured: before 13-32 (median 19: the inverted face, off by codec noise and the two grabs' timing),
    # after 59-67 (the new model's face)
    assert statistics.median(before) < 30, (before, after)
    assert statistics.median(after) > 45 and statistics.median(after) > 2 * statistics.median(before), (before, after)
    page.click("#stop")
