"""Media I/O: images and video frames in as RGB, videos out (mp4, avi, y4m), and errors that name the path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faces.errors import InputError
from faces.media import (
    check_image,
    iter_video_frames,
    list_images,
    probe_video,
    read_image,
    write_video,
    write_y4m,
)


def _gradient_frames(count: int, width: int = 160, height: int = 120) -> list[np.ndarray]:
    """Smooth, distinct frames (codecs keep smooth content nearly intact): a colour ramp that shifts per frame."""
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(count):
        r = (xs * 255 / width + i * 7) % 256
        g = ys * 255 / height
        b = np.full_like(r, 40 + 10 * i)
        frames.append(np.dstack([r, g, b]).astype(np.uint8))
    return frames


def test_read_image_returns_rgb_not_bgr(tmp_path: Path) -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    loaded = read_image(path)

    assert loaded.shape == (20, 30, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, image)


def test_read_image_converts_grey_to_three_channels(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((10, 12), 77, np.uint8))
    loaded = read_image(path)
    assert loaded.shape == (10, 12, 3)
    assert np.all(loaded == 77)


def test_missing_image_error_names_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.png"
    with pytest.raises(InputError, match="nowhere.png"):
        read_image(path)


@pytest.mark.parametrize("content", [b"this is text, not a PNG", b""])
def test_file_that_is_not_an_image_error_names_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"not a readable image: .*fake\.png"):
        read_image(path)
    with pytest.raises(InputError, match=r"fake\.png"):
        check_image(path)


def test_list_images_sorted_and_only_images(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.png", "c.PNG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.jpg", "c.PNG"]


def test_empty_folder_error_names_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty_faces"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match=r"no image files .* in folder .*empty_faces"):
        list_images(folder)


def test_missing_folder_error_names_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="lost_folder"):
        list_images(tmp_path / "lost_folder")


def test_mp4_round_trip_keeps_frames_count_and_content(tmp_path: Path) -> None:
    frames = _gradient_frames(12)
    path = write_video(tmp_path / "clip.mp4", frames, fps=25)

    info = probe_video(path)
    decoded = list(iter_video_frames(path))

    assert (info.width, info.height) == (160, 120)
    assert info.fps == pytest.approx(25, abs=0.01)
    assert [i for i, _ in decoded] == list(range(12))
    for (_, got), want in zip(decoded, frames, strict=True):
        # H.264 at crf 12 on smooth content: small error; a BGR/RGB swap would give ~100.
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 3.0
    assert not list(tmp_path.glob(".*partial*")), "no temporary file may be left behind"


def test_iter_video_frames_every_and_start(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi", _gradient_frames(10), fps=10)
    assert [i for i, _ in iter_video_frames(path, every=3)] == [0, 3, 6, 9]
    assert [i for i, _ in iter_video_frames(path, every=3, start=4)] == [4, 7]


def test_y4m_header_and_planes_match_chromium_format(tmp_path: Path) -> None:
    frames = _gradient_frames(3, width=64, height=48)
    path = write_y4m(tmp_path / "cam.y4m", frames, fps=30)

    data = path.read_bytes()
    header, _, body = data.partition(b"\n")
    assert header == b"YUV4MPEG2 W64 H48 F30:1 Ip A1:1 C420jpeg"
    frame_bytes = 64 * 48 * 3 // 2
    assert len(body) == 3 * (len(b"FRAME\n") + frame_bytes)
    first = np.frombuffer(body[6 : 6 + frame_bytes], np.uint8).reshape(72, 64)
    np.testing.assert_array_equal(first, cv2.cvtColor(frames[0], cv2.COLOR_RGB2YUV_I420))
    # And a real decoder reads it back as the same pictures.
    decoded = [f for _, f in iter_video_frames(path)]
    assert len(decoded) == 3
    assert np.abs(decoded[1].astype(int) - frames[1].astype(int)).mean() < 4.0


def test_write_video_rejects_mismatched_frames_and_leaves_nothing(tmp_path: Path) -> None:
    frames = _gradient_frames(2) + [np.zeros((10, 10, 3), np.uint8)]
    target = tmp_path / "bad.mp4"
    with pytest.raises(InputError, match=r"frame 2 .*bad\.mp4"):
        write_video(target, frames)
    assert list(tmp_path.iterdir()) == []


def test_write_video_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"clip\.gif"):
        write_video(tmp_path / "clip.gif", _gradient_frames(1))


def test_unreadable_video_error_names_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    with pytest.raises(InputError, match=r"broken\.mp4"):
        probe_video(path)


def test_missing_video_error_names_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"video not found: .*gone\.mp4"):
        probe_video(tmp_path / "gone.mp4")
    with pytest.raises(InputError, match=r"gone\.mp4"):
        list(iter_video_frames(tmp_path / "gone.mp4"))
