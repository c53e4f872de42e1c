"""The Studio tab end to end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Chromium's fake camera plays a synthetic face (y4m); the page records it with MediaRecorder as source A, a
synthetic video of B is uploaded as the target, consent is given, and the job runs on the real server with the
micro recipe: progress events arrive, the preview renders, and "Use this model" appears.

Next step, once the lead has wired the catalog hot-add (StudioService(on_models_ready=...) in app.py): the new
model appears in the Live swap tab's model list without a restart, "Use this model" switches the live stream to it
over the control channel, and the faces coming back change. Extend this test with those three checks then.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.test_browser import CHROMIUM, page_with_screenshot
from tests.studio.conftest import StudioMedia, StudioServer, studio_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def camera_y4m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three seconds of synthetic identity A turning and talking, looped by Chromium's fake camera."""
    from faces.media import write_y4m
    from faces.synthetic import IDENTITY_A, render_sequence

    frames = [rendered.frame for rendered in render_sequence(IDENTITY_A, 45, size=(320, 240), seed=5, fps=15.0)]
    return write_y4m(tmp_path_factory.mktemp("studio_camera") / "camera.y4m", frames + frames[-2:0:-1], fps=15.0)


@pytest.fixture
def chromium(camera_y4m: Path) -> Iterator[Any]:
    """Headless Chromium whose fake camera plays the synthetic face."""
    if not CHROMIUM.exists():
        print("SKIP reason: /usr/bin/chromium is missing (make browser installs Debian's chromium)")
        pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream",
             "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={camera_y4m}"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        try:
            yield browser
        finally:
            browser.close()


def test_record_upload_consent_train_and_preview_in_the_page(
    start_studio: Any, chromium: Any, studio_media: StudioMedia, micro_base: Path, tmp_path: Path
) -> None:
    server: StudioServer = start_studio(studio_config(tmp_path / "studio", base=micro_base))
    with page_with_screenshot(chromium, "studio-tab") as page:
        _train_in_the_page(page, server, studio_media, tmp_path)


def _train_in_the_page(page: Any, server: StudioServer, studio_media: StudioMedia, tmp_path: Path) -> None:
    page.goto(server.url)
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
    assert server.models_seen.ready == [tmp_path / "studio" / jobs[0]["id"] / "models"]
