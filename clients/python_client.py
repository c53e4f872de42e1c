"""`swapstream client`: send a video file through the server in real time and record the swapped result as MP4.

When the file has sound (and --no-audio is not given) it goes too, in step with the pictures, and the recording
has the sound the server sends back (AAC), placed against the picture that arrived with it, so the recording's A/V
sync is the returned stream's (`ReturnTimeline`). The recording is written beside --output and renamed into place when complete. With signing credentials
(--sign-cert / --sign-key or $SWAPSTREAM_SIGN_CERT / $SWAPSTREAM_SIGN_KEY) it is signed first, so --output only
ever holds a finished, signed MP4 (C2PA: created by swapstream, edited by the session's model; docs/provenance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from tqdm import tqdm

from clients.errors import ClientConfigError, ConnectionFailed, MediaError
from clients.media import (
    AUDIO_RATE,
    MediaClock,
    PacedAudioTrack,
    PacedVideoTrack,
    has_audio,
    iter_audio_frames,
    iter_video_rgb,
    probe_input,
)
from clients.signing import fetch_session_model
from clients.webrtc import JITTER_BUFFER_MODES, JitterBufferMode, ServerEndpoint, SwapPeer, endpoint_from_flags, parse_options
from provenance.facts import RecordingFacts
from provenance.sign import sign_mp4
from provenance.signer import (
    SigningConfig,
    SigningCredentials,
    add_signing_flags,
    load_signing_credentials,
    signing_config_from_flags,
)
from faces.media import VideoInfo
from faces.recording import Mp4Recorder, RecordingError
from swapstream.atomic import atomic_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientConfig:
    """Everything `swapstream client` needs, built once from its flags."""

    endpoint: ServerEndpoint
    input: Path
    output: Path
    options: dict[str, Any] = field(default_factory=dict)
    jitter_buffer: JitterBufferMode = "marker"
    idle_s: float = 1.5
    signing: SigningConfig | None = None
    audio: bool = True
    """Send (and record) the input's sound, when it has any."""

    def __post_init__(self) -> None:
        if not self.input.is_file():
            raise ClientConfigError(f"--input {self.input}: no such file")
        if self.output.suffix.lower() != ".mp4":
            raise ClientConfigError(f"--output {self.output}: the recording is an MP4; name it *.mp4")
        if not self.output.parent.is_dir():
            raise ClientConfigError(f"--output {self.output}: folder {self.output.parent} does not exist")
        if self.output.resolve() == self.input.resolve():
            raise ClientConfigError(f"--output {self.output} would overwrite --input")
        if self.jitter_buffer not in JITTER_BUFFER_MODES:
            raise ClientConfigError(f"--jitter-buffer must be marker or stock, got {self.jitter_buffer!r}")
        if self.idle_s <= 0:
            raise ClientConfigError(f"--idle must be > 0 seconds, got {self.idle_s}")


@dataclass(frozen=True)
class ClientResult:
    """What a round trip produced."""

    input: VideoInfo
    output: Path
    frames_sent: int
    frames_received: int
    recorded_s: float
    session_id: str | None
    signed: bool = False
    audio_s: float = 0.0
    """Seconds of returned sound in the recording (0 without)."""


async def _recording_facts(config: ClientConfig, credentials: SigningCredentials | None) -> RecordingFacts | None:
    """What the signed recording will state, or None when it will not be signed (warning says why)."""
    if credentials is None:
        logger.warning("%s will not be signed: no C2PA credentials (--sign-cert/--sign-key or $SWAPSTREAM_SIGN_CERT/"
                       "$SWAPSTREAM_SIGN_KEY); `swapstream keys init DIR` makes local test ones", config.output)
        return None
    model = await fetch_session_model(config.endpoint, config.options)
    if model is None:
        logger.warning("%s will not be signed: the server changes no faces in this session (echo pipeline, swap "
                       "off or no swap model), so there is no AI edit to state and the input file's origin is "
                       "unknown", config.output)
        return None
    return RecordingFacts(source=f"video file {config.input.name} sent by swapstream client", model=model)


async def run_client(config: ClientConfig) -> ClientResult:
    """Send `config.input` through the server at its own frame rate and write what comes back to `config.output`.

    Signing credentials are loaded and checked, and the session's model looked up, before anything is sent.
    """
    credentials = load_signing_credentials(config.signing) if config.signing is not None else None
    facts = await _recording_facts(config, credentials)
    info = probe_input(config.input)
    with atomic_path(config.output) as recording:
        result = await _record(config, info, recording)
        if credentials is not None and facts is not None:
            sign_mp4(recording, recording, credentials, facts, title=config.output.name)
    return replace(result, output=config.output, signed=facts is not None)


class ReturnTimeline:
    """Places the returned sound against the returned pictures in the recording.

    Pictures keep their own timestamps (the file is as long as what was sent, even when the server dropped
    frames or the first ones came late). Sound goes where the pictures arriving with it are: its arrival time
    minus the pictures' typical lag behind their timestamps (the median over the last PICTURE_WINDOW pictures, as
    the server's own audio delay is a median), so the recording's A/V sync is the returned stream's.
    """

    PICTURE_WINDOW = 15

    def __init__(self) -> None:
        self._first_pts_s: float | None = None
        self._lags: deque[float] = deque(maxlen=self.PICTURE_WINDOW)

    def picture(self, pts_s: float, arrived: float) -> float:
        """The file time of a returned picture with timestamp `pts_s` that arrived at `arrived`."""
        if self._first_pts_s is None:
            self._first_pts_s = pts_s
        file_s = pts_s - self._first_pts_s
        self._lags.append(arrived - file_s)
        return file_s

    def sound(self, arrived: float) -> float | None:
        """The file time of returned sound that arrived at `arrived`; None before the first picture."""
        return arrived - statistics.median(self._lags) if self._lags else None


async def _record_audio(audio: MediaStreamTrack, recorder: Mp4Recorder, timeline: ReturnTimeline) -> None:
    """Write the returned sound into the recording until the track ends."""
    try:
        while True:
            frame = await audio.recv()
            file_s = timeline.sound(time.monotonic())
            if isinstance(frame, AudioFrame) and file_s is not None:
                recorder.write_audio(frame, file_s)
    except MediaStreamError:
        pass


async def _record(config: ClientConfig, info: VideoInfo, path: Path) -> ClientResult:
    """The round trip itself: send the input, record what comes back into `path` (a finished, unsigned MP4)."""
    clock = MediaClock()
    track = PacedVideoTrack(iter_video_rgb(config.input), info.fps, clock=clock)
    with_audio = config.audio and has_audio(config.input)
    sound = PacedAudioTrack(iter_audio_frames(config.input), clock) if with_audio else None
    try:
        recorder = Mp4Recorder(path, info.fps, audio=with_audio)
    except RecordingError as exc:
        raise MediaError(f"--output {config.output}: {exc}") from exc
    received = 0
    timeline = ReturnTimeline()
    # Long enough for the whole file plus set-up, so a stalled server cannot hang the command.
    deadline = time.monotonic() + (info.duration_s or 600.0) + 60.0
    progress = tqdm(total=info.frame_count, unit="frame", desc="round trip", disable=None)
    audio_task: asyncio.Future[None] | None = None
    try:
        async with SwapPeer(config.endpoint, send=track, send_audio=sound, options=config.options,
                            jitter_buffer=config.jitter_buffer) as peer:
            assert peer.video is not None
            if peer.audio is not None:
                audio_task = asyncio.ensure_future(_record_audio(peer.audio, recorder, timeline))
            elif sound is not None:
                logger.warning("the server sent no sound back: %s will have none", config.output)
            while time.monotonic() < deadline:
                # Before the input ends, frames may pause while the encoder warms up; after it ends,
                # a short silence means everything in flight has come back.
                wait = config.idle_s if track.finished.is_set() else 10.0
                try:
                    frame = await asyncio.wait_for(peer.video.recv(), timeout=wait)
                except asyncio.TimeoutError:
                    if track.finished.is_set():
                        break
                    raise ConnectionFailed(f"{config.endpoint.url}: no video came back for {wait:.0f} s") from None
                except MediaStreamError:
                    break
                arrived = time.monotonic()
                pts_s = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else arrived
                recorder.write(frame.to_ndarray(format="rgb24"), timeline.picture(pts_s, arrived))
                received += 1
                progress.update(1)
            session_id = peer.session_id
    finally:
        progress.close()
        if audio_task is not None:
            audio_task.cancel()
            await asyncio.gather(audio_task, return_exceptions=True)
        recorder.close()
    if received == 0:
        raise ConnectionFailed(f"{config.endpoint.url}: the server returned no frames")
    recorded = recorder.duration_s + 1.0 / info.fps
    return ClientResult(info, path, track.frames_sent, received, recorded, session_id,
                        audio_s=recorder.audio_samples / AUDIO_RATE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swapstream client",
        description="Send a video file through a swapstream server in real time and record the swapped result.",
    )
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--input", required=True, type=Path, help="video file to send (any format FFmpeg reads)")
    parser.add_argument("--output", required=True, type=Path, help="MP4 file to write the swapped stream to")
    parser.add_argument("--token", help="bearer token if the server runs with --token (default: $SWAPSTREAM_TOKEN)")
    parser.add_argument("--options", help='session options as JSON, e.g. \'{"model": "b2a", "feather": 9}\'')
    parser.add_argument("--jitter-buffer", choices=JITTER_BUFFER_MODES, default="marker",
                        help="receive-side jitter buffer: marker (release on the RTP marker bit) or aiortc's stock")
    parser.add_argument("--idle", type=float, default=1.5, dest="idle_s",
                        help="seconds of silence after the input ends before the recording closes")
    parser.add_argument("--no-audio", action="store_false", dest="audio",
                        help="send and record the pictures only, even when the input has sound")
    add_signing_flags(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> ClientConfig:
    return ClientConfig(
        endpoint=endpoint_from_flags(args.url, args.token),
        input=args.input,
        output=args.output,
        options=parse_options(args.options),
        jitter_buffer=args.jitter_buffer,
        idle_s=args.idle_s,
        signing=signing_config_from_flags(args.sign_cert, args.sign_key, args.sign_tsa_url, os.environ),
        audio=args.audio,
    )


def main(argv: list[str]) -> int:
    config = config_from_args(build_parser().parse_args(argv))
    result = asyncio.run(run_client(config))
    print(
        f"wrote {result.output}: {result.frames_received} frames, {result.recorded_s:.2f} s"
        f"{f' with {result.audio_s:.2f} s of sound' if result.audio_s else ', no sound'} "
        f"(sent {result.frames_sent} frames, input {result.input.duration_s or 0:.2f} s at {result.input.fps:.2f} fps; "
        f"session {result.session_id}; {'C2PA-signed' if result.signed else 'not signed'})"
    )
    return 0
