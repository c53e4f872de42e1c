"""Releasing what a closed session's media held, now rather than when the garbage collector gets to it.

aiortc's peer connection, its senders and receivers and their callbacks form reference cycles, so a closed
session's objects wait for a full garbage collection. The parts that hold native resources are let go
explicitly at the session's end instead: each sender's encoder (libvpx/x264 state, several MB) and the decoded
frames still queued on the remote tracks. Freed native memory stays in the C allocator's arenas; on glibc
`malloc_trim(0)` hands it back to the system, and fewer arenas (`limit_malloc_arenas`, one per thread by
default, up to 8 per core) leave less to fragment (both measured in docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)

MALLOC_ARENAS = 2
"""glibc malloc arenas for the server process (its default: one per thread that allocates, up to 8 per core)."""
M_ARENA_MAX = -8  # mallopt parameter number, glibc's malloc.h

# aiortc 1.16 keeps a sender's encoder in this name-mangled attribute until the sender itself is collected.
SENDER_ENCODER_ATTRIBUTE = "_RTCRtpSender__encoder"


def release_codecs(pc: RTCPeerConnection) -> None:
    """After `pc.close()`: drop each sender's encoder and the frames left on its remote tracks' queues."""
    for transceiver in pc.getTransceivers():
        sender = transceiver.sender
        if getattr(sender, SENDER_ENCODER_ATTRIBUTE, None) is not None:
            setattr(sender, SENDER_ENCODER_ATTRIBUTE, None)
        queue = getattr(transceiver.receiver.track, "_queue", None)
        if isinstance(queue, asyncio.Queue):
            while not queue.empty():
                queue.get_nowait()


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (before the server starts its threads); False where that is not possible.

    A MALLOC_ARENA_MAX set in the environment wins (glibc read it at start).
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))


def free_native_memory() -> None:
    """Return the C allocator's free memory to the system (glibc `malloc_trim(0)`; a no-op elsewhere).

    Blocking (it walks the heap): call it from a worker thread.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols, libc's among them
    except (OSError, AttributeError):
        return  # not glibc (musl, macOS): nothing to do
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)


async def close_in_steps(owner: str, steps: Sequence[tuple[str, Callable[[], Any]]]) -> None:
    """Run each (what, step) in order, awaiting what a step returns; a failed step is logged and the rest still run.

    Whatever an early step fails on, the later ones (the detector, the batcher place) are still freed.
    """
    for what, step in steps:
        try:
            result = step()
            if asyncio.isfuture(result) or asyncio.iscoroutine(result):
                await result
        except Exception as exc:  # noqa: BLE001 - one failed step must not keep the rest allocated
            logger.error("%s: closing its %s failed: %s", owner, what, exc, exc_info=exc)
