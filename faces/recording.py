"""Recording a live stream to MP4: H.264 video and AAC audio, each placed at its own time.

Both the client (`swapstream client --output`) and the server (`swapstream serve --record`) write their recordings
with `Mp4Recorder`. Video frames and audio frames come with times in seconds on one clock (any origin: the first
video frame starts the file). Video frames keep their times (a variable frame rate where frames were dropped). Audio is
written as one gap-free sample stream, because an AAC track has no holes: each frame goes right after the
previous one unless that would put it more than AUDIO_SLACK_S away from its own time; then silence fills a gap
(the sender paused, packets were lost) or the frame is dropped (audio running ahead of its times), so the sound
never drifts from the picture by more than that. The file is a plain MP4 (`moov` + `mdat`, not fragmented),
finished by `close()`; callers write it under `swapstream.atomic.atomic_path`.
"""

from __future__ import annotations

import fractions
import logging
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from faces.errors import InputError

logger = logging.getLogger(__name__)

VIDEO_CLOCK_HZ = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_HZ)
AUDIO_RATE = 48_000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
AUDIO_LAYOUT = "stereo"
AUDIO_SLACK_S = 0.06
"""How far an audio frame may be written from its own time before silence is inserted or the frame dropped:
three 20 ms packets, more than the arrival jitter of a loaded machine, well under what lips show."""
SILENCE_CHUNK = 960


class RecordingError(InputError):
    """A recording that cannot be written; the message names the file."""


class Mp4Recorder:
    """Writes RGB frames and audio frames, each with its time in seconds, to an H.264 (+ AAC) MP4.

    `audio=True` gives the file an audio track (it must be known before the first frame: MP4 streams are fixed
    when the file starts); audio written before the first video frame, or to a recorder without audio, is
    dropped. Counters: `frames_written`, `audio_samples`, `silence_samples` (inserted), `audio_dropped` (frames).
    """

    def __init__(self, path: Path, fps: float, audio: bool = False) -> None:
        self.path = path
        self._fps = fps
        self._has_audio = audio
        self._container: av.container.OutputContainer | None = None
        self._video: av.video.stream.VideoStream | None = None
        self._audio: av.audio.stream.AudioStream | None = None
        self._resampler: av.AudioResampler | None = None
        self._last_pts = -1
        self._origin: float | None = None
        self._audio_next: int | None = None
        self.frames_written = 0
        self.audio_samples = 0
        self.silence_samples = 0
        self.audio_dropped = 0
        if path.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise RecordingError(f"{path}: use an .mp4 file name")
        if not path.parent.is_dir():
            raise RecordingError(f"{path}: folder {path.parent} does not exist")

    @property
    def duration_s(self) -> float:
        """Seconds from the first video frame to the last one written."""
        return max(self._last_pts, 0) / VIDEO_CLOCK_HZ

    def _open(self, width: int, height: int) -> None:
        try:
            self._container = av.open(str(self.path), mode="w", format="mp4")
        except (av.error.FFmpegError, OSError) as exc:
            raise RecordingError(f"{self.path}: cannot write: {exc}") from exc
        video = self._container.add_stream("libx264", rate=fractions.Fraction(round(self._fps * 1000), 1000))
        video.width, video.height = width - width % 2, height - height % 2
        video.pix_fmt = "yuv420p"
        video.time_base = VIDEO_TIME_BASE
        video.codec_context.time_base = VIDEO_TIME_BASE
        video.options = {"preset": "veryfast", "crf": "20"}
        self._video = video
        if self._has_audio:
            audio = self._container.add_stream("aac", rate=AUDIO_RATE)
            audio.layout = AUDIO_LAYOUT
            audio.time_base = AUDIO_TIME_BASE
            self._audio = audio
            self._resampler = av.AudioResampler(format="s16", layout=AUDIO_LAYOUT, rate=AUDIO_RATE)

    def write(self, rgb: npt.NDArray[np.uint8], time_s: float) -> None:
        """Add a video frame shown from `time_s` (the first frame starts the file)."""
        if self._container is None:
            self._open(rgb.shape[1], rgb.shape[0])
        assert self._video is not None and self._container is not None
        if self._origin is None:
            self._origin = time_s
        pts = max(round((time_s - self._origin) * VIDEO_CLOCK_HZ), self._last_pts + 1)
        self._last_pts = pts
        height, width = self._video.height, self._video.width
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        self._mux(self._video.encode(frame))
        self.frames_written += 1

    def write_audio(self, frame: av.AudioFrame, time_s: float) -> None:
        """Add an audio frame (any format and rate) whose first sample was received at `time_s`."""
        if self._audio is None or self._origin is None or self._resampler is None:
            self.audio_dropped += 1
            return
        for converted in self._resampler.resample(frame):
            self._place(converted, round((time_s - self._origin) * AUDIO_RATE))
            time_s += converted.samples / AUDIO_RATE

    def _place(self, frame: av.AudioFrame, wanted: int) -> None:
        """Write `frame` gap-free after the last one, unless that is over AUDIO_SLACK_S from `wanted` (samples)."""
        slack = round(AUDIO_SLACK_S * AUDIO_RATE)
        if self._audio_next is None:
            if wanted < 0:
                self.audio_dropped += 1  # received before the first video frame
                return
            self._audio_next = wanted
        elif wanted > self._audio_next + slack:
            self._write_silence(wanted - self._audio_next)
        elif wanted < self._audio_next - slack:
            self.audio_dropped += 1
            return
        self._encode_audio(frame)
        self.audio_samples += frame.samples

    def _write_silence(self, samples: int) -> None:
        self.silence_samples += samples
        while samples > 0:
            count = min(samples, SILENCE_CHUNK)
            silence = av.AudioFrame.from_ndarray(np.zeros((1, 2 * count), np.int16), format="s16", layout=AUDIO_LAYOUT)
            silence.sample_rate = AUDIO_RATE
            self._encode_audio(silence)
            samples -= count

    def _encode_audio(self, frame: av.AudioFrame) -> None:
        assert self._audio is not None and self._audio_next is not None
        frame.pts, frame.time_base = self._audio_next, AUDIO_TIME_BASE
        self._audio_next += frame.samples
        self._mux(self._audio.encode(frame))

    def _mux(self, packets: list[av.Packet[Any]]) -> None:
        assert self._container is not None
        try:
            for packet in packets:
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise RecordingError(f"{self.path}: cannot write: {exc}") from exc

    def close(self) -> None:
        """Flush the encoders and finish the file (nothing is written if no video frame came)."""
        if self._container is None:
            return
        try:
            assert self._video is not None
            self._mux(self._video.encode(None))
            if self._audio is not None:
                self._mux(self._audio.encode(None))
        finally:
            self._container.close()
            self._container = None
