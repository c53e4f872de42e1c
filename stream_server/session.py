"""Sessions: one per ingesting peer (/offer or WHIP), owning its peer connection, tasks, viewers and frame stages.

`SessionRegistry` holds every live session and owns closing them; a session's end (DELETE, ICE failure, the
peer closing, not connecting in time, no frame for --idle-timeout, server shutdown) frees everything it started:
its tasks, its WHEP viewers' peer connections, its codecs and frame stages (detector, place in the inference
batcher), each step even when an earlier one failed, and its place in the registry last.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Literal

from aiortc import RTCDataChannel, RTCPeerConnection, RTCRtpReceiver
from aiortc.mediastreams import MediaStreamTrack

from rtc.audio import EncodedAudio, EncodedAudioTap, install_audio_buffer
from stream_server.audio import AudioRelay, ForwardedAudioTrack, VideoDelay
from stream_server.config import SessionOptions
from stream_server.control import ControlChannel, SessionStats
from stream_server.errors import ConfigError, SessionLimitError, UnknownSessionError
from stream_server.frames import FrameScheduler, FrameStages, ProcessedFrame
from stream_server.liveness import Liveness
from stream_server.metrics import ServerMetrics
from stream_server.ratelimit import ThrottledLog
from stream_server.recording import RecordedFile, RecordingSettings, SessionRecording
from stream_server.release import close_in_steps, release_codecs
from stream_server.tracks import FrameBroadcaster, LatestFrameReader, ProcessedVideoTrack, discard
from stream_server.viewers import ViewerSet

logger = logging.getLogger(__name__)

SessionKind = Literal["offer", "whip"]
__all__ = ["Session", "SessionKind", "SessionLimitError", "SessionRegistry", "SessionServices", "UnknownSessionError"]


@dataclass(frozen=True)
class SessionServices:
    """What every session takes from the server, built once by the app."""

    executor: Executor
    """The frame workers."""
    metrics: ServerMetrics
    make_stages: Callable[[str, Callable[[str], None]], FrameStages]
    """A new session's frame stages, from its id and its way to tell its client of a problem (`notify_client`)."""
    check_options: Callable[[SessionOptions], None]
    """Raises ConfigError for options this server cannot serve (for example an unknown model)."""
    connect_timeout_s: float
    stats_interval_s: float
    idle_timeout_s: float = 30.0
    """A connected session that delivers no decoded frame for this long is closed."""
    max_pixels: int | None = None
    """Incoming frames with more pixels are not processed (None: no limit)."""
    free_memory: Callable[[], None] | None = None
    """Run on a frame worker after a session closed (returns freed native memory to the OS)."""
    recording: RecordingSettings | None = None
    """None unless the server records (--record DIR)."""
    record_all: bool = False
    """Record every session from its first frame (--record-all)."""


class Session:
    """One ingesting peer and everything it started.

    Created by the registry, which it tells when it closes (`on_closed`) and asks to close it from callbacks
    and from its own tasks (`close_later`).
    """

    def __init__(self, kind: SessionKind, options: SessionOptions, services: SessionServices,
                 close_later: Callable[[Session], None], on_closed: Callable[[Session], None]) -> None:
        self.id = uuid.uuid4().hex
        self.kind = kind
        self.options = options
        self.pc = RTCPeerConnection()
        self.broadcaster = FrameBroadcaster(on_sent=self._on_sent)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.viewers = ViewerSet(self.id, self.spawn)
        self.closed = False
        self.frames_processed = 0
        self._services = services
        self._close_later = close_later
        self._on_closed = on_closed
        self._reader: LatestFrameReader | None = None
        self._scheduler: FrameScheduler | None = None
        self.video_delay = VideoDelay()
        self.audio: AudioRelay | None = None
        """The peer's audio on its way out (None until, and unless, the peer sends an audio track)."""
        self.recording: SessionRecording | None = None
        self._control = ControlChannel(self.set_options, self.set_recording)
        self._stats = SessionStats()
        self._frame_errors = ThrottledLog(logger, f"session {self.id[:8]}: frame failed")
        self._liveness = Liveness(self.id[:8], services.connect_timeout_s, services.idle_timeout_s,
                                  expire=lambda _: close_later(self))
        self._loop = asyncio.get_running_loop()
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.spawn(self._liveness.run(), "liveness")

    # -- lifecycle -------------------------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a task owned by this session (cancelled when it closes)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"swapstream-{self.id[:8]}-{name}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        logger.info("session %s: connection %s", self.id[:8], state)
        if state == "connected":
            self._liveness.connected.set()
        elif state in ("failed", "closed"):
            self._close_later(self)

    def _frame_arrived(self) -> None:
        self._liveness.frame_arrived()
        self._services.metrics.frames_in.inc()

    def check_open(self) -> None:
        """UnknownSessionError (404) once the session has ended."""
        if self.closed:
            raise UnknownSessionError(f"no live session {self.id!r} (it has ended)")

    async def close(self) -> None:
        """Free everything the session started; safe to call more than once.

        Every step runs even when an earlier one failed (the failure is logged); the registry slot is freed last.
        """
        if self.closed:
            return
        self.closed = True
        try:
            current = asyncio.current_task()
            tasks = [t for t in self.tasks if t is not current]
            for task in tasks:
                task.cancel()
            await close_in_steps(f"session {self.id[:8]}", [
                ("incoming video", self._stop_reader),
                ("outgoing tracks", self.broadcaster.close),
                ("outgoing audio", self._close_audio),
                ("tasks", lambda: asyncio.gather(*tasks, return_exceptions=True)),
                ("viewers", self.viewers.close_all),
                ("peer connection", self.pc.close),
                ("codecs", lambda: release_codecs(self.pc)),
                ("frame stages", self._close_stages),
                ("recording", self._stop_recording),
            ])
        finally:
            self._on_closed(self)
        logger.info("session %s closed (%d frames processed)", self.id[:8], self.frames_processed)

    async def _stop_reader(self) -> None:
        if self._reader is not None:
            await self._reader.stop()

    def _close_audio(self) -> None:
        if self.audio is not None:
            self.audio.close()

    async def _stop_recording(self) -> None:
        if self.recording is not None:
            self.recording.stop()
            await self.recording.wait()

    async def _close_stages(self) -> None:
        try:
            if self._scheduler is not None:
                await self._scheduler.close()
        finally:
            if self._services.free_memory is not None:
                await asyncio.get_running_loop().run_in_executor(self._services.executor, self._services.free_memory)

    # -- media -----------------------------------------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        """Process the peer's first video track and forward its first audio track (an /offer peer gets both
        back); drain any other track."""
        if track.kind == "audio" and self.audio is None and self._forward_audio(track):
            return
        if self._reader is not None or track.kind != "video":
            # aiortc queues every decoded frame of every track without bound: an ignored track must still be read.
            self.spawn(discard(track), f"discard-{track.kind}")
            return
        metrics = self._services.metrics
        self._reader = LatestFrameReader(track, on_frame=self._frame_arrived, on_drop=metrics.frames_dropped.inc)
        self._scheduler = FrameScheduler(self._reader, self._services.make_stages(self.id, self.notify_client),
                                         self._services.executor,
                                         options=lambda: self.options, on_processed=self._on_processed,
                                         on_error=self._report_error, on_drop=metrics.frames_dropped.inc,
                                         max_pixels=self._services.max_pixels)
        self.spawn(self._process(self._scheduler), "process")
        self.spawn(self._report_stats(), "stats")
        if self.kind == "offer":
            self.pc.addTrack(self.subscribe())
        if self._services.record_all:
            self.set_recording(True)

    def _forward_audio(self, track: MediaStreamTrack) -> bool:
        """Tap the audio track's receiver for its Opus packets and relay them (stream_server.audio); False if
        the receiver cannot be tapped (the track is then drained like any other)."""
        receiver = self._receiver_of(track)
        relay = AudioRelay(self.video_delay)
        if receiver is None or not install_audio_buffer(receiver, EncodedAudioTap(relay.push)):
            logger.warning("session %s: the peer's audio is not forwarded (its receiver cannot be tapped)", self.id[:8])
            return False
        self.audio = relay
        relay.listeners.append(self._record_sound)
        self.spawn(relay.run(), "audio")
        if self.kind == "offer":
            self.pc.addTrack(relay.subscribe())
        return True

    def _receiver_of(self, track: MediaStreamTrack) -> RTCRtpReceiver | None:
        return next((t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track), None)

    def subscribe(self) -> ProcessedVideoTrack:
        """A new outgoing track carrying this session's processed video."""
        return self.broadcaster.subscribe()

    def subscribe_audio(self) -> ForwardedAudioTrack | None:
        """A new outgoing track carrying this session's audio, in step with its video; None without audio."""
        return self.audio.subscribe() if self.audio is not None else None

    async def _process(self, scheduler: FrameScheduler) -> None:
        await scheduler.run()
        logger.info("session %s: incoming video ended", self.id[:8])
        self._close_later(self)

    def _on_processed(self, processed: ProcessedFrame) -> None:
        self.frames_processed += 1
        metrics = self._services.metrics
        metrics.observe_stages(processed.stage_ms)
        metrics.faces.inc(processed.faces)
        self._stats.frame_processed(processed.stage_ms, processed.faces)
        self.broadcaster.publish(processed.timed)
        if self.recording is not None:
            self.recording.picture(processed.rgb, processed.timed.received_at, processed.options)

    def _report_error(self, exc: Exception) -> None:
        self._frame_errors.error(exc)
        self._control.send_error(f"frame failed: {exc}")

    def notify_client(self, message: str) -> None:
        """An error event on the control channel, from any thread (the frame stages run in worker threads)."""
        try:
            self._loop.call_soon_threadsafe(self._control.send_error, message)
        except RuntimeError:  # the loop has closed: so has the session
            logger.debug("session %s: not sent, the loop is closed: %s", self.id[:8], message)

    def _on_sent(self, encode_ms: float, added_ms: float) -> None:
        self._services.metrics.frame_sent(encode_ms, added_ms)
        self._stats.frame_sent(encode_ms, added_ms)
        self.video_delay.observe(added_ms / 1000)

    # -- recording (--record DIR) -----------------------------------------------------------------------------
    def set_recording(self, on: bool) -> dict[str, Any]:
        """Start or stop recording this session (stream_server.recording); the status to tell the client.

        ConfigError when the server does not record.
        """
        settings = self._services.recording
        if settings is None:
            raise ConfigError("this server does not record: start it with --record DIR")
        if on and self.recording is None:
            source = f"a live stream sent to swapstream serve ({'WHIP' if self.kind == 'whip' else 'POST /offer'})"
            self.recording = SessionRecording(self.id, settings, source, has_audio=lambda: self.audio is not None,
                                              on_finished=self._recorded)
        elif on and self.recording is not None:
            self.recording.start()  # again, after a stop: the next file gets the next number
        elif self.recording is not None:
            self.recording.stop()
        return {"type": "record", "on": self.recording is not None and self.recording.active,
                "signed": settings.credentials is not None}

    def _record_sound(self, audio: EncodedAudio) -> None:
        if self.recording is not None:
            self.recording.sound(audio)

    def _recorded(self, finished: RecordedFile) -> None:
        self._control.send(finished.message())

    # -- options and the control channel ---------------------------------------------------------------------
    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self._control.attach(channel)

    def set_options(self, changes: Mapping[str, Any]) -> SessionOptions:
        """Apply option changes from the next frame on and return the options now in force.

        ConfigError names a bad option; the options in force stay as they were.
        """
        options = self.options.updated(changes)
        self._services.check_options(options)
        self.options = options
        return options

    def move_to_model(self, model: str, reason: str) -> None:
        """Swap with `model` from the next frame because the model in use has left the server; the client gets
        the options now in force with the reason (`{"type": "options", "options", "reason"}`)."""
        self.options = self.options.updated({"model": model})
        self._control.send({"type": "options", "options": self.options.as_dict(), "reason": reason})

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(self._services.stats_interval_s)
            reader = self._reader
            self._control.send({**self._stats.snapshot_and_reset(), "type": "stats", "session_id": self.id,
                                "frames_in": reader.received if reader else 0,
                                "frames_dropped": reader.dropped if reader else 0,
                                "viewers": len(self.viewers), "audio": self._audio_stats()})

    def _audio_stats(self) -> dict[str, Any] | None:
        """The audio relay's figures for the stats message (None when the peer sends no audio)."""
        relay = self.audio
        if relay is None:
            return None
        delay = relay.delay_s
        return {"delay_ms": round(delay * 1000, 1) if delay is not None else None, "packets_in": relay.received,
                "packets_out": relay.forwarded, "packets_dropped": relay.dropped}

    # -- WHEP viewers ----------------------------------------------------------------------------------------
    def check_viewer_room(self) -> None:
        """UnknownSessionError (404) once the session has ended, SessionLimitError (503) when it has all its viewers."""
        self.check_open()
        self.viewers.check_room()

    def add_viewer(self, pc: RTCPeerConnection) -> str:
        """Count a WHEP viewer's peer connection as this session's (closed with it, or when it does not connect
        within --connect-timeout); its id. Refused (404) once the session has ended."""
        self.check_open()
        return self.viewers.add(pc, self._services.connect_timeout_s)

    async def remove_viewer(self, viewer_id: str) -> bool:
        """End one viewer; False if the session has no such viewer."""
        return await self.viewers.remove(viewer_id)


class SessionRegistry:
    """Owns every live session: creates them within the session limit, closes them, and closes them all on shutdown."""

    def __init__(self, max_sessions: int, services: SessionServices) -> None:
        self._max_sessions = max_sessions
        self._services = services
        self._sessions: dict[str, Session] = {}
        self._closing: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def create(self, kind: SessionKind, options: SessionOptions) -> Session:
        """A new session; ConfigError for options this server cannot serve, SessionLimitError when it is full."""
        self._services.check_options(options)
        if len(self._sessions) >= self._max_sessions:
            raise SessionLimitError(f"server is full: {self._max_sessions} live sessions (--max-sessions); "
                                    "try again later")
        session = Session(kind, options, self._services, close_later=self.close_later, on_closed=self._remove)
        self._sessions[session.id] = session
        self._services.metrics.sessions.set(len(self._sessions))
        return session

    def get(self, session_id: str) -> Session:
        """The live session with that id; UnknownSessionError (404) if there is none."""
        session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSessionError(f"no live session {session_id!r}")
        return session

    def close_later(self, session: Session) -> None:
        """Close `session` in a task of the registry's (from a callback, or from one of the session's own tasks)."""
        if session.closed or session.id in self._closing:
            return
        task = asyncio.get_running_loop().create_task(session.close(), name=f"swapstream-close-{session.id[:8]}")
        self._closing[session.id] = task
        task.add_done_callback(lambda _: self._closing.pop(session.id, None))

    def _remove(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        self._services.metrics.sessions.set(len(self._sessions))

    async def close_all(self) -> None:
        """Close every session and wait for closes already under way."""
        await asyncio.gather(*(s.close() for s in list(self._sessions.values())), return_exceptions=True)
        await self.settle()

    async def settle(self) -> None:
        """Wait for closes under way (tests and shutdown)."""
        await asyncio.gather(*list(self._closing.values()), return_exceptions=True)
