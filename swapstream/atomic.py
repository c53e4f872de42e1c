"""Atomic file writes: readers see the old file or the whole new one, never a torn one, even after a crash.

Every writer in the project (manifest, checkpoints, engines, face sets, videos) goes through `atomic_path`:
write to a private temporary file beside the target, flush it to disk, rename it over the target, then flush
the directory so the rename itself survives a power cut. Standard library only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# mkstemp makes files private (0600); results are read by other users (a server running as its own user).
DEFAULT_MODE = 0o644
# Marks a temporary name (".NAME.<random>.partial.SUFFIX"), so leftovers of a killed writer can be found.
_TEMP_MARK = ".partial"


@contextmanager
def atomic_path(target: str | Path, mode: int = DEFAULT_MODE) -> Iterator[Path]:
    """A fresh temporary path beside `target` to write by any means; on success it replaces `target` durably.

    The temporary name keeps `target`'s suffix (video writers choose the container by it) and is unique, so
    two writers never share it. On any exception the temporary file is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f"{_TEMP_MARK}{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def atomic_write_bytes(target: str | Path, data: bytes, mode: int = DEFAULT_MODE) -> Path:
    """Write `data` to `target` atomically and durably; returns `target` as a Path."""
    with atomic_path(target, mode) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | Path, text: str, mode: int = DEFAULT_MODE) -> Path:
    """Write `text` (UTF-8) to `target` atomically and durably; returns `target` as a Path."""
    return atomic_write_bytes(target, text.encode("utf-8"), mode)


def fsync_directory(directory: str | Path) -> None:
    """Make renames in `directory` durable; a no-op where directories cannot be opened (some filesystems)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in `folder`; returns what was removed.

    Only for a folder one program owns while it runs (a face set being extracted): another writer's file in flight
    has the same kind of name.
    """
    removed = []
    for leftover in Path(folder).glob(f".*{_TEMP_MARK}*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed
