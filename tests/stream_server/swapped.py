"""Was this returned frame's face swapped? Per-frame verdicts over time for peers streaming the synthetic clip.

A returned frame is compared with the frame the peer sent (what an echo gives back, up to codec error) inside the
rendered face's hull: the tiny trained a2b model changes the face by 16-20 grey levels there, VP8 alone by 4-4.5
(tests/stream_server/test_streaming.py measured both), so each frame is judged on its own.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tests.fixtures.server import Clip
from tests.stream_server.peer import OfferPeer

SWAPPED_FACE_ERROR = 10.0  # above: the face was swapped
UNSWAPPED_FACE_ERROR = 6.5  # below: the face came back as it was sent (codec error only)
SKIP_FIRST = 3  # the first frames are the encoder's ramp-up


def face_error(clip: Clip, peer: OfferPeer, index: int, returned: np.ndarray) -> float:
    """Mean absolute difference between the returned and the sent frame inside the face hull (shrunk by 6 px)."""
    inside, _ = clip.face_masks(index, shrink=6, grow=12)
    sent = peer.source.frame_for(index)
    diff = np.abs(returned.astype(np.int16) - sent.astype(np.int16)).mean(axis=2)
    return float(diff[inside].mean())


@dataclass(frozen=True)
class Verdict:
    """One returned frame: its number, when it arrived (time.monotonic) and how much its face changed."""

    index: int
    arrived_at: float
    face_error: float

    @property
    def swapped(self) -> bool:
        return self.face_error > SWAPPED_FACE_ERROR


@dataclass
class FaceWatch:
    """Judges every frame a peer gets back; `poll()` takes the frames the peer kept since the last poll."""

    clip: Clip
    peer: OfferPeer
    start_index: int = 0
    """The peer's first frame number (`open_offer_peer`'s start_index)."""
    verdicts: list[Verdict] = field(default_factory=list)

    def poll(self) -> None:
        received = self.peer.received
        for index in sorted(received.frames):
            returned = received.frames.pop(index)  # the peer keeps at most 64 frames: make room
            if index >= self.start_index + SKIP_FIRST:
                arrived = received.arrived_at.get(index, time.monotonic())
                self.verdicts.append(Verdict(index, arrived, face_error(self.clip, self.peer, index, returned)))

    def since(self, start: float, end: float = float("inf")) -> list[Verdict]:
        """The verdicts of frames that arrived in [start, end)."""
        return [v for v in self.verdicts if start <= v.arrived_at < end]

    def first_swapped_after(self, start: float) -> float | None:
        """When the first swapped frame arrived at or after `start` (None if none has yet)."""
        return next((v.arrived_at for v in sorted(self.verdicts, key=lambda v: v.arrived_at)
                     if v.arrived_at >= start and v.swapped), None)


def median_error(verdicts: list[Verdict]) -> float:
    """The median face change of these frames (nan when there are none)."""
    return statistics.median(v.face_error for v in verdicts) if verdicts else float("nan")


async def watch(watches: list[FaceWatch], seconds: float, until: Callable[[], bool] | None = None,
                interval: float = 0.1) -> bool:
    """Poll every watch for `seconds`, or until `until()` is true (then True)."""
    deadline = time.monotonic() + seconds
    while True:
        for face_watch in watches:
            face_watch.poll()
        if until is not None and until():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
