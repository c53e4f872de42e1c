"""The newest-frame reader drops stale frames (and counts them); outgoing tracks never buffer more than one."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from stream_server.frames import TimedFrame
from stream_server.tracks import FrameBroadcaster, LatestFrameReader

pytestmark = pytest.mark.timeout(30)


class CountingSource(MediaStreamTrack):
    """A live source producing numbered frames every `interval` seconds, ending after `count`."""

    kind = "video"

    def __init__(self, count: int, interval: float) -> None:
        super().__init__()
        self.count, self.interval, self.made = count, interval, 0

    async def recv(self) -> VideoFrame:
        if self.made >= self.count:
            self.stop()
            raise MediaStreamError
        await asyncio.sleep(self.interval)
        frame = VideoFrame.from_ndarray(np.full((16, 16, 3), self.made, np.uint8), format="rgb24")
        frame.pts, frame.time_base = self.made * 3000, Fraction(1, 90000)
        self.made += 1
        return frame


def _number(frame: VideoFrame) -> int:
    return int(frame.to_ndarray(format="rgb24")[0, 0, 0])


async def test_a_slow_consumer_gets_the_newest_frame_and_drops_are_counted() -> None:
    dropped: list[int] = []
    reader = LatestFrameReader(CountingSource(40, 0.002), on_drop=lambda: dropped.append(1))
    taken = []
    while (timed := await reader.next_frame()) is not None:
        taken.append(_number(timed.frame))
        await asyncio.sleep(0.02)  # a consumer ten times slower than the source
    await reader.stop()
    assert reader.received == 40
    assert taken == sorted(taken) and taken[-1] == 39, taken  # newest-first, in order, ends on the last frame
    assert len(taken) < 20
    assert reader.dropped == 40 - len(taken) == len(dropped)


async def test_a_fast_consumer_gets_every_frame() -> None:
    reader = LatestFrameReader(CountingSource(20, 0.01))
    taken = []
    while (timed := await reader.next_frame()) is not None:
        taken.append(_number(timed.frame))
    assert taken == list(range(20)) and reader.dropped == 0


async def test_outgoing_tracks_keep_only_the_newest_frame_and_keep_timestamps() -> None:
    sent: list[tuple[float, float]] = []
    broadcaster = FrameBroadcaster(on_sent=lambda encode, added: sent.append((encode, added)))
    fast, slow = broadcaster.subscribe(), broadcaster.subscribe()
    frames = []
    for n in range(5):
        frame = VideoFrame.from_ndarray(np.full((16, 16, 3), n, np.uint8), format="rgb24")
        frame.pts, frame.time_base = 1000 + n, Fraction(1, 90000)
        frames.append(frame)
    broadcaster.publish(TimedFrame(frames[0], 0.0))
    assert _number(await fast.recv()) == 0
    for frame in frames[1:]:
        broadcaster.publish(TimedFrame(frame, 0.0))
    newest = await slow.recv()
    assert _number(newest) == 4 and newest.pts == 1004 and newest.time_base == Fraction(1, 90000)
    assert slow.skipped == 4 and fast.skipped == 3
    assert _number(await fast.recv()) == 4
    assert len(sent) == 1  # fast's second recv reported the first frame as encoded
    broadcaster.close()
    with pytest.raises(MediaStreamError):
        await fast.recv()
    assert broadcaster.subscriber_count == 0
