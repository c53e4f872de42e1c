"""`swapstream serve --record DIR`: a session's processed video and forwarded sound, recorded to signed MP4s.

A session records when its control channel asks (`{"type": "record", "on": true}`) or, with `--record-all`, from
its first frame. Recording stays off the live path: the session hands each processed frame's RGB pixels (the array
the frame was made from, not the av frame its encoders read) and each audio packet to the recording with one
non-blocking put into a bounded queue, and the recording's own thread decodes the sound, encodes H.264 + AAC
(`faces.recording.Mp4Recorder`) and signs. When that thread falls behind, frames and packets are dropped (counted)
rather than queued without end: a recording on a saturated machine skips frames, the live stream does not slow.
Pictures are placed at their input's arrival at the server and sound at its own, so the file keeps the input's
A/V sync whatever the processing delay.

A file holds one model's work: C2PA facts name one model, so when the session's model changes (or swapping is
turned on or off) the file is finished and the next one begins: `DIR/<session>.mp4`, then `DIR/<session>-2.mp4`...
Each file is written under `swapstream.atomic.atomic_path` and signed before it is renamed into place
(`provenance.sign.sign_mp4`: created by swapstream from a live stream, edited by the model, its name, sha256 and
consent record), so `DIR` only ever holds finished files. A file of frames no model changed has no AI edit to
state and is written unsigned (the log and the control channel say so).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from av import AudioFrame, CodecContext
from av.audio.codeccontext import AudioCodecContext
from av.packet import Packet
from numpy.typing import NDArray

from faces.recording import Mp4Recorder
from provenance.facts import ModelFacts, RecordingFacts
from provenance.sign import sign_mp4
from provenance.signer import SigningCredentials
from rtc.audio import EncodedAudio
from stream_server.config import SessionOptions
from swapstream.atomic import atomic_path

logger = logging.getLogger(__name__)

QUEUE_ITEMS = 128
"""About two seconds of 15 fps video with its 50 packets/s of sound: the slack the writer thread gets."""
QUEUED_PICTURES = 30
"""Of which at most this many pictures (2 s at 15 fps; 28 MB at 640x480), whatever the sound does."""
NOMINAL_FPS = 30.0
"""The rate the MP4 declares; the frames keep their own times."""
OPUS_TIME_BASE = Fraction(1, 48_000)


@dataclass(frozen=True)
class RecordingSettings:
    """What every recording of a server needs, built once by the app from --record and the signing flags."""

    directory: Path
    credentials: SigningCredentials | None
    """None with --record-unsigned."""
    model_of: Callable[[SessionOptions], ModelFacts | None]
    """The model whose work a frame processed with these options is (None: no model changed it)."""


@dataclass(frozen=True)
class RecordedFile:
    """A finished recording."""

    path: Path
    signed: bool
    frames: int
    seconds: float
    audio_seconds: float
    dropped: int
    """Frames and packets the writer could not take in time."""
    reason: str = ""
    """Why it is not signed, when it is not."""

    def message(self) -> dict[str, Any]:
        """The control channel's "recorded" message."""
        return {"type": "recorded", "file": self.path.name, "signed": self.signed, "frames": self.frames,
                "seconds": round(self.seconds, 2), "audio_seconds": round(self.audio_seconds, 2),
                "dropped": self.dropped, **({"reason": self.reason} if self.reason else {})}


@dataclass(frozen=True)
class Picture:
    """A processed frame's pixels (not changed afterwards) and when its input reached the server."""

    rgb: NDArray[np.uint8]
    received_at: float


class _Empty(Exception):
    """No frame reached the file: there is nothing to keep."""


_STOP = object()


class FileWriter:
    """One MP4 being written by its own thread from a bounded queue of pictures and sound."""

    def __init__(self, path: Path, settings: RecordingSettings, model: ModelFacts | None, source: str,
                 audio: bool) -> None:
        self.path = path
        self.model = model
        self._settings = settings
        self._source = source
        self._audio = audio
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_ITEMS)
        self._picture_room = threading.BoundedSemaphore(QUEUED_PICTURES)
        self.dropped = 0
        self._result: RecordedFile | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"swapstream-record-{path.stem[:8]}", daemon=True)
        self._thread.start()

    def put(self, item: Picture | EncodedAudio) -> None:
        """Queue a picture (RGB, input arrival time) or a sound packet; dropped (counted) when the queue is full."""
        picture = isinstance(item, Picture)
        if picture and not self._picture_room.acquire(blocking=False):
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if picture:
                self._picture_room.release()

    async def finish(self) -> RecordedFile | None:
        """Close the file (sign it, rename it into place) and return it; None if no frame reached it."""
        await asyncio.to_thread(self._stop_thread)
        if self._error is not None:
            raise self._error
        return self._result

    def _stop_thread(self) -> None:
        # A writer that failed takes nothing from its queue any more: keep trying only while it runs.
        while self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=0.2)
                break
            except queue.Full:
                continue
        self._thread.join()

    def _run(self) -> None:
        try:
            with atomic_path(self.path) as partial:
                recorder = self._write(partial)
                self._result = self._sign(partial, recorder)
        except _Empty:
            logger.info("recording %s: no frame, no file", self.path.name)
        except Exception as exc:  # noqa: BLE001 - the thread's edge: a failed recording must not go unreported
            logger.error("recording %s failed: %s", self.path.name, exc)
            self._error = exc

    def _write(self, partial: Path) -> Mp4Recorder:
        recorder = Mp4Recorder(partial, NOMINAL_FPS, audio=self._audio)
        decoder = _opus_decoder() if self._audio else None
        try:
            while (item := self._queue.get()) is not _STOP:
                if isinstance(item, Picture):
                    self._picture_room.release()
                    recorder.write(item.rgb, item.received_at)
                elif isinstance(item, EncodedAudio) and decoder is not None:
                    for frame in _decode(decoder, item):
                        recorder.write_audio(frame, item.arrived_at)
        finally:
            recorder.close()
        if recorder.frames_written == 0:
            raise _Empty
        return recorder

    def _sign(self, partial: Path, recorder: Mp4Recorder) -> RecordedFile:
        credentials, reason = self._settings.credentials, ""
        if credentials is None:
            reason = "the server records unsigned (--record-unsigned)"
        elif self.model is None:
            reason = "no model changed these frames (swap off or the echo pipeline): there is no AI edit to state"
        else:
            sign_mp4(partial, partial, credentials, RecordingFacts(source=self._source, model=self.model),
                     title=self.path.name)
        return RecordedFile(self.path, not reason, recorder.frames_written, recorder.duration_s,
                            recorder.audio_samples / 48_000, self.dropped, reason)


def _opus_decoder() -> AudioCodecContext:
    decoder = CodecContext.create("libopus", "r")
    assert isinstance(decoder, AudioCodecContext)
    decoder.sample_rate, decoder.layout = 48_000, "stereo"
    return decoder


def _decode(decoder: AudioCodecContext, audio: EncodedAudio) -> list[AudioFrame]:
    packet = Packet(audio.data)
    packet.pts, packet.time_base = audio.timestamp, OPUS_TIME_BASE
    try:
        return decoder.decode(packet)
    except Exception as exc:  # noqa: BLE001 - a corrupt packet loses 20 ms of sound, not the recording
        logger.debug("undecodable audio packet: %s", exc)
        return []


class SessionRecording:
    """A session's recording: the file being written now, and the next one when the model changes.

    `picture` and `sound` run on the event loop and never wait; `stop()` ends the recording and finishes the
    current file in the background, `wait()` waits for that.
    `on_finished(file)` is told of every finished file (the session tells its client); `has_audio()` says, when a
    file starts, whether the session has sound (an MP4's tracks are fixed when it starts).
    """

    def __init__(self, session_id: str, settings: RecordingSettings, source: str, has_audio: Callable[[], bool],
                 on_finished: Callable[[RecordedFile], None]) -> None:
        self._session_id = session_id
        self._settings = settings
        self._source = source
        self._has_audio = has_audio
        self._on_finished = on_finished
        self._writer: FileWriter | None = None
        self._options: SessionOptions | None = None
        self._files = 0
        self._finishing: set[asyncio.Task[None]] = set()
        self.active = True

    @property
    def current_file(self) -> str | None:
        """The name of the file being written, if a frame has started one."""
        return self._writer.path.name if self._writer is not None else None

    def picture(self, rgb: NDArray[np.uint8], received_at: float, options: SessionOptions) -> None:
        """A processed frame (its pixels are not changed afterwards) made with `options`."""
        if not self.active:
            return
        if self._writer is None or (options != self._options and self._settings.model_of(options) != self._writer.model):
            self._next_file(options)
        self._options = options
        assert self._writer is not None
        self._writer.put(Picture(rgb, received_at))

    def sound(self, audio: EncodedAudio) -> None:
        """An audio packet as it reached the server."""
        if self.active and self._writer is not None:
            self._writer.put(audio)

    def _next_file(self, options: SessionOptions) -> None:
        if self._writer is not None:
            self._finish_later(self._writer)
        self._files += 1
        suffix = "" if self._files == 1 else f"-{self._files}"
        path = self._settings.directory / f"{self._session_id}{suffix}.mp4"
        self._writer = FileWriter(path, self._settings, self._settings.model_of(options), self._source,
                                  audio=self._has_audio())
        logger.info("session %s: recording to %s", self._session_id[:8], path)

    def _finish_later(self, writer: FileWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._finish(writer), name=f"swapstream-finish-{writer.path.stem}")
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, writer: FileWriter) -> None:
        try:
            finished = await writer.finish()
        except Exception as exc:  # noqa: BLE001 - reported by the writer's thread; the session goes on
            logger.error("recording %s was not kept: %s", writer.path.name, exc)
            return
        if finished is not None:
            logger.info("recorded %s: %d frames, %.1f s, %s%s", finished.path, finished.frames, finished.seconds,
                        "signed" if finished.signed else "NOT signed", f" ({finished.reason})" if finished.reason else "")
            self._on_finished(finished)

    def start(self) -> None:
        """Record again after `stop`: the next frame starts the next file (never one already written)."""
        self.active = True

    def stop(self) -> None:
        """Stop recording now; the current file is finished in the background (`wait` for it)."""
        self.active = False
        writer, self._writer = self._writer, None
        if writer is not None:
            self._finish_later(writer)

    async def wait(self) -> None:
        """Wait until every file stopped so far is finished."""
        await asyncio.gather(*list(self._finishing), return_exceptions=True)
