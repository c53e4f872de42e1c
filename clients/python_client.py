"""`swapstream client`: send a video file through the server in real time and record the swapped result as MP4.

The recording is written beside --output and renamed into place when complete. With signing credentials
(--sign-cert / --sign-key or $SWAPSTREAM_SIGN_CERT / $SWAPSTREAM_SIGN_KEY) it is signed first, so --output only
ever holds a finished, signed MP4 (C2PA: created by swapstream, edited by the session's model; docs/provenance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiortc.mediastreams import MediaStreamError
from tqdm import tqdm

from clients.errors import ClientConfigError, ConnectionFailed
from clients.media import Mp4Recorder, PacedVideoTrack, iter_video_rgb, probe_input
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


async def _record(config: ClientConfig, info: VideoInfo, path: Path) -> ClientResult:
    """The round trip itself: send the input, record what comes back into `path` (a finished, unsigned MP4)."""
    track = PacedVideoTrack(iter_video_rgb(config.input), info.fps)
    recorder = Mp4Recorder(path, info.fps)
    received = 0
    first_s: float | None = None
    last_s = 0.0
    # Long enough for the whole file plus set-up, so a stalled server cannot hang the command.
    deadline = time.monotonic() + (info.duration_s or 600.0) + 60.0
    progress = tqdm(total=info.frame_count, unit="frame", desc="round trip", disable=None)
    try:
        async with SwapPeer(config.endpoint, send=track, options=config.options,
                            jitter_buffer=config.jitter_buffer) as peer:
            assert peer.video is not None
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
                time_s = float(frame.pts * frame.time_base) if frame.pts is not None else time.monotonic()
                first_s = time_s if first_s is None else first_s
                last_s = time_s
                recorder.write(frame.to_ndarray(format="rgb24"), time_s)
                received += 1
                progress.update(1)
            session_id = peer.session_id
    finally:
        progress.close()
        recorder.close()
    if received == 0:
        raise ConnectionFailed(f"{config.endpoint.url}: the server returned no frames")
    recorded = (last_s - (first_s or 0.0)) + 1.0 / info.fps
    return ClientResult(info, path, track.frames_sent, received, recorded, session_id)


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
    )


def main(argv: list[str]) -> int:
    config = config_from_args(build_parser().parse_args(argv))
    result = asyncio.run(run_client(config))
    print(
        f"wrote {result.output}: {result.frames_received} frames, {result.recorded_s:.2f} s "
        f"(sent {result.frames_sent} frames, input {result.input.duration_s or 0:.2f} s at {result.input.fps:.2f} fps; "
        f"session {result.session_id}; {'C2PA-signed' if result.signed else 'not signed'})"
    )
    return 0
