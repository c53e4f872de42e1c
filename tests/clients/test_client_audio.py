"""`swapstream client` with sound: the input's sound goes through the server and into the recording, in step with the
pictures, and the signed recording (video + AAC) verifies."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from clients import python_client
from clients.avsync import ONSET_LEVEL, FlashClip
from faces.recording import Mp4Recorder
from tests.clients.conftest import CLIP_FPS, ping_pong

SECONDS = 10  # the server may take seconds to return its first frame on a loaded machine
FLASH_FRAMES = 3  # a flash still shows when the server drops a frame of it (it keeps only the newest)


@pytest.fixture(scope="module")
def flash_click_video(tmp_path_factory: pytest.TempPathFactory, face_frames: list[np.ndarray]) -> Path:
    """Ten seconds of the synthetic face that flash (top-right square, 3 frames) and click (audio) once a second,
    together."""
    clip = FlashClip(CLIP_FPS, lit_frames=FLASH_FRAMES)
    count = int(SECONDS * CLIP_FPS)
    path = tmp_path_factory.mktemp("client_audio") / "flash_click.mp4"
    recorder = Mp4Recorder(path, CLIP_FPS, audio=True)
    sounds = clip.audio_frames(count)
    written = 0.0
    for index, frame in enumerate(ping_pong(face_frames, count)):
        recorder.write(clip.mark(index, frame.copy()), index / CLIP_FPS)
        while written <= index / CLIP_FPS:
            sound = next(sounds)
            recorder.write_audio(sound, written)
            written += sound.samples / sound.sample_rate
    recorder.close()
    return path


def flashes_and_clicks(path: Path) -> tuple[list[float], list[float], float, float]:
    """The times (s) of the flashes and of the clicks' onsets in an MP4, and where its video and its audio end."""
    clip = FlashClip(CLIP_FPS, lit_frames=FLASH_FRAMES)
    with av.open(str(path)) as container:
        shown = [(float(f.time), clip.shows_flash(f.to_ndarray(format="rgb24"))) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    first = float(frames[0].time)
    samples = np.concatenate([f.to_ndarray()[0] for f in frames])  # AAC decodes to planar float: channel 0
    rate = frames[0].sample_rate
    flashes = [t for (t, lit), (_, before) in zip(shown[1:], shown) if lit and not before]
    loud = np.flatnonzero(np.abs(samples) > ONSET_LEVEL / 32768)
    clicks = [first + i / rate for n, i in enumerate(loud) if n == 0 or i - loud[n - 1] > rate // 2]
    return flashes, clicks, shown[-1][0] + 1 / CLIP_FPS, first + samples.size / rate


def test_the_input_file_is_made_as_the_test_says(flash_click_video: Path) -> None:
    flashes, clicks, video_end, audio_end = flashes_and_clicks(flash_click_video)
    assert abs(video_end - audio_end) < 0.1 and abs(video_end - SECONDS) < 0.01
    assert len(flashes) == SECONDS - 1 and len(clicks) == SECONDS  # frame 0 flashes too, with nothing before it
    for flash in flashes:
        assert min(abs(flash - click) for click in clicks) < 0.01


@pytest.mark.slow
def test_client_sends_and_records_the_sound_in_step_and_signed(inverting_server, flash_click_video: Path,
                                                               signing_keys, tmp_path: Path, capsys) -> None:
    from provenance.cli import verify_main

    output = tmp_path / "swapped.mp4"
    code = python_client.main(["--url", inverting_server.url, "--input", str(flash_click_video), "--output",
                               str(output), "--sign-cert", str(signing_keys.chain), "--sign-key", str(signing_keys.key)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "of sound" in printed and "C2PA-signed" in printed, printed
    with av.open(str(output)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
    flashes, clicks, video_end, audio_end = flashes_and_clicks(output)
    assert abs(audio_end - video_end) < 0.6, (audio_end, video_end)  # sound to the end (it starts with the
    # first returned picture's: the server drops sound until it has sent a picture to keep in step with)
    assert len(flashes) >= 2 and len(clicks) >= 2, (flashes, clicks)
    offsets = [min(clicks, key=lambda c: abs(c - flash)) - flash for flash in flashes]
    # Loose: a flash's first frame may have been dropped (up to 2 frames late), and this machine is shared.
    assert abs(float(np.median(offsets))) < 0.2, offsets

    assert verify_main([str(output), "--trust", str(signing_keys.ca), "--json"], environ={}) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] and result["ai_generated"] and result["model"]["name"] == "swap_a2b"


def test_no_audio_flag_sends_pictures_only(inverting_server, flash_click_video: Path, tmp_path: Path,
                                           capsys) -> None:
    output = tmp_path / "silent.mp4"
    code = python_client.main(["--url", inverting_server.url, "--input", str(flash_click_video), "--output",
                               str(output), "--no-audio"])
    assert code == 0 and "no sound" in capsys.readouterr().out
    with av.open(str(output)) as container:
        assert [s.type for s in container.streams] == ["video"]
