"""The sound's hold-and-forward stage on its own: the video-delay estimate, release times, bounds, the end."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc.mediastreams import MediaStreamError

from rtc.audio import EncodedAudio
from stream_server.audio import (
    MAX_AUDIO_DELAY_S,
    MAX_HELD_PACKETS,
    MIN_DELAY_FRAMES,
    TRACK_QUEUE_PACKETS,
    AudioRelay,
    VideoDelay,
)


def _delay(*seconds: float) -> VideoDelay:
    delay = VideoDelay()
    for value in seconds:
        delay.observe(value)
    return delay


def _packet(index: int, arrived_at: float) -> EncodedAudio:
    return EncodedAudio(bytes([index % 256]) * 40, index * 960, arrived_at)


def test_video_delay_is_the_median_of_the_recent_frames_once_there_are_enough() -> None:
    delay = VideoDelay(window=5)
    for _ in range(MIN_DELAY_FRAMES - 1):
        delay.observe(0.04)
        assert delay.seconds is None  # the first frames wait for face detection: not yet an estimate
    delay.observe(0.04)
    assert delay.seconds == pytest.approx(0.04)
    delay.observe(0.9)  # one slow frame does not move it
    assert delay.seconds == pytest.approx(0.04)
    for _ in range(3):
        delay.observe(0.08)  # a lasting change does, within half the window
    assert delay.seconds == pytest.approx(0.08)
    delay.observe(-1.0)
    delay.observe(60.0)
    assert 0.0 <= delay.seconds <= MAX_AUDIO_DELAY_S


async def test_packets_leave_at_arrival_plus_the_video_delay_in_order() -> None:
    relay = AudioRelay(_delay(0.05, 0.05, 0.05))
    track = relay.subscribe()
    runner = asyncio.ensure_future(relay.run())
    try:
        start = time.monotonic()
        for index in range(5):
            relay.push(_packet(index, time.monotonic()))
            await asyncio.sleep(0.02)
        released = []
        for _ in range(5):
            packet = await asyncio.wait_for(track.recv(), 2)
            released.append((packet.pts, time.monotonic() - start))
    finally:
        runner.cancel()
    assert [pts for pts, _ in released] == [index * 960 for index in range(5)]
    for index, (_, at) in enumerate(released):
        assert at >= index * 0.02 + 0.05 - 0.002, released  # never before its time
    assert relay.forwarded == 5 and relay.dropped == 0


async def test_a_falling_delay_never_reorders_and_sound_before_the_video_is_dropped() -> None:
    delay = VideoDelay()
    relay = AudioRelay(delay)
    relay.push(_packet(0, time.monotonic()))
    assert relay.dropped == 1  # no picture sent yet: nothing to keep step with
    for _ in range(MIN_DELAY_FRAMES):
        delay.observe(0.3)
    now = time.monotonic()
    relay.push(_packet(1, now))
    for _ in range(20):
        delay.observe(0.0)
    relay.push(_packet(2, now + 0.02))
    track = relay.subscribe()
    runner = asyncio.ensure_future(relay.run())
    try:
        first = await asyncio.wait_for(track.recv(), 2)
        second = await asyncio.wait_for(track.recv(), 2)
    finally:
        runner.cancel()
    assert (first.pts, second.pts) == (960, 1920)
    assert time.monotonic() - now >= 0.3 - 0.002


async def test_a_stalled_track_loses_its_oldest_packets_and_the_relay_stays_bounded() -> None:
    relay = AudioRelay(_delay(0.0, 0.0, 0.0))
    stalled = relay.subscribe()
    runner = asyncio.ensure_future(relay.run())
    try:
        for index in range(TRACK_QUEUE_PACKETS + 5):
            relay.push(_packet(index, time.monotonic()))
        await asyncio.sleep(0.05)
        assert stalled.dropped == 5
        assert (await stalled.recv()).pts == 5 * 960  # the oldest went
    finally:
        runner.cancel()
    held = AudioRelay(_delay(MAX_AUDIO_DELAY_S, MAX_AUDIO_DELAY_S, MAX_AUDIO_DELAY_S))
    for index in range(MAX_HELD_PACKETS + 7):
        held.push(_packet(index, time.monotonic()))
    assert held.dropped == 7 and held.received == MAX_HELD_PACKETS + 7


async def test_closing_ends_every_track_and_later_ones() -> None:
    relay = AudioRelay(_delay(0.0, 0.0, 0.0))
    track = relay.subscribe()
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    relay.close()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 1)
    assert relay.subscribe().readyState == "ended"
    relay.push(_packet(0, time.monotonic()))
    assert relay.forwarded == 0
