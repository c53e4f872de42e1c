"""swapstream.atomic: a reader sees the old file or the whole new one; nothing is left behind; others can read it."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from swapstream.atomic import atomic_path, atomic_write_bytes, atomic_write_text, remove_leftovers


class WriterCrashed(Exception):
    """Stands for any failure in the middle of writing (a full disk, a bad frame, Ctrl-C)."""


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.safetensors"
    atomic_write_bytes(target, b"old contents")

    with pytest.raises(WriterCrashed):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half of the new con")
            raise WriterCrashed

    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors"]


def test_a_failure_before_the_first_write_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new" / "clip.mp4"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target):
            raise KeyboardInterrupt
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_the_temporary_file_sits_beside_the_target_and_keeps_its_suffix(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    with atomic_path(target) as tmp:
        # video writers pick the container from the suffix; the rename must stay on one filesystem
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".")
        assert not target.exists(), "the target appears only when the write is complete"
        tmp.write_bytes(b"frames")
    assert target.read_bytes() == b"frames"
    assert not tmp.exists()


def test_the_result_is_readable_by_other_users(tmp_path: Path) -> None:
    # The server may run as another user than the exporter or trainer that wrote the file.
    old_umask = os.umask(0o077)
    try:
        written = atomic_write_text(tmp_path / "report.json", '{"ok": true}')
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert written.read_text(encoding="utf-8") == '{"ok": true}'


def test_concurrent_writers_never_share_a_temporary_name(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    # the inner writer finished first; the outer one replaced it as a whole
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_many_threads_writing_one_file_leave_one_whole_version(tmp_path: Path) -> None:
    target = tmp_path / "engine.plan"
    payloads = [bytes([index]) * 200_000 for index in range(8)]
    start = threading.Barrier(len(payloads))
    errors: list[BaseException] = []

    def write(payload: bytes) -> None:
        try:
            start.wait()
            atomic_write_bytes(target, payload)
        except BaseException as exc:  # collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert target.read_bytes() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine.plan"]


def test_remove_leftovers_deletes_only_temporaries_of_killed_writers(tmp_path: Path) -> None:
    keep = atomic_write_bytes(tmp_path / "face_f000001_0.png", b"png")
    (tmp_path / ".notes.txt").write_text("a hidden file of the user")
    killed = atomic_path(tmp_path / "face_f000002_0.png")
    leftover = killed.__enter__()  # the writer never gets to leave the block: as if the process were killed
    leftover.write_bytes(b"half a png")

    assert remove_leftovers(tmp_path) == [leftover]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.txt", keep.name]
