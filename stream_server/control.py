"""A session's "control" DataChannel: option changes in; options, errors and stats out.

The client sends `{"type": "options", ...}`; the server answers `{"type": "options", "options": {...}}` (the
options now in force) or `{"type": "error", "message": ...}`, and sends `{"type": "stats", ...}` about once a
second with the means of `SessionStats`. `{"type": "record", "on": true|false}` starts or stops recording the
session (`swapstream serve --record DIR`); the answer is `{"type": "record", "on", "signed"}`, and each finished
file is announced with `{"type": "recorded", "file", "signed", ...}`.

A peer cannot make the channel expensive: messages over MAX_CONTROL_MESSAGE_BYTES are refused before they are
parsed, JSON nested too deeply for the parser is an error like any other, and messages beyond
CONTROL_RATE_PER_S (bursts of CONTROL_BURST) are dropped unanswered, with one error a second saying how many.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiortc import RTCDataChannel

from stream_server.config import SessionOptions
from stream_server.errors import ConfigError
from stream_server.frames import Stage, StageTimes
from stream_server.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

CONTROL_LABEL = "control"
MAX_CONTROL_MESSAGE_BYTES = 64 * 1024
"""Largest control message parsed; an options change is a few dozen bytes."""
CONTROL_RATE_PER_S = 20.0
CONTROL_BURST = 40.0
DROPPED_REPORT_INTERVAL_S = 1.0


class ControlChannel:
    """The session side of the "control" DataChannel; sends nothing until the client opens one."""

    def __init__(self, apply_options: Callable[[Mapping[str, Any]], SessionOptions],
                 set_recording: Callable[[bool], Mapping[str, Any]]) -> None:
        # apply_options(changes) -> the options in force; ConfigError names a bad option.
        # set_recording(on) -> the recording status to answer; ConfigError when the server does not record.
        self._apply_options = apply_options
        self._set_recording = set_recording
        self._channel: RTCDataChannel | None = None
        self._bucket = TokenBucket(CONTROL_RATE_PER_S, CONTROL_BURST)
        self._dropped = 0
        self._dropped_reported_at = float("-inf")

    def attach(self, channel: RTCDataChannel) -> None:
        """Use `channel` if it is the control channel (other DataChannels are ignored)."""
        if channel.label != CONTROL_LABEL:
            return
        self._channel = channel
        channel.on("message", self._on_message)

    def send(self, payload: Mapping[str, Any]) -> None:
        """Send a JSON message if the channel is open; a closing channel is not an error."""
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            try:
                channel.send(json.dumps(payload))
            except Exception as exc:  # noqa: BLE001 - a closing channel must not break the frame loop
                logger.debug("control channel send failed: %s", exc)

    def send_error(self, message: str) -> None:
        """Tell the client what went wrong."""
        self.send({"type": "error", "message": message})

    def _admit(self, message: object) -> bool:
        """Whether to handle `message` now: within the rate (else dropped and counted) and the size limit."""
        if not self._bucket.allow():
            self._dropped += 1
            now = time.monotonic()
            if now - self._dropped_reported_at >= DROPPED_REPORT_INTERVAL_S:
                self.send_error(f"too many control messages: {self._dropped} dropped unanswered (at most "
                                f"{CONTROL_RATE_PER_S:g} a second)")
                self._dropped, self._dropped_reported_at = 0, now
            return False
        # A str's length in characters is at most its length in UTF-8 bytes: no need to encode it to know.
        size = len(message) if isinstance(message, (str, bytes)) else 0
        if size > MAX_CONTROL_MESSAGE_BYTES:
            unit = "characters" if isinstance(message, str) else "bytes"
            self.send_error(f"control message of {size} {unit} is too large (at most {MAX_CONTROL_MESSAGE_BYTES} "
                            "bytes); it was not read")
            return False
        return True

    def _on_message(self, message: object) -> None:
        if not self._admit(message):
            return
        try:
            data = json.loads(message)  # type: ignore[arg-type]  # str or bytes; anything else is a TypeError
        except RecursionError:
            self.send_error("control message is not JSON the server reads: it is nested too deeply")
            return
        except (TypeError, ValueError) as exc:
            self.send_error(f"control message is not JSON: {exc}")
            return
        kind = data.get("type") if isinstance(data, dict) else None
        if kind not in ("options", "record"):
            self.send_error('control messages are {"type": "options", ...} or {"type": "record", "on": true|false}')
            return
        assert isinstance(data, dict)
        try:
            if kind == "record":
                if not isinstance(data.get("on"), bool):
                    raise ConfigError(f'"record" needs "on": true or false, got {data.get("on")!r}')
                self.send(self._set_recording(data["on"]))
            else:
                self.send({"type": "options", "options": self._apply_options(data).as_dict()})
        except ConfigError as exc:
            self.send_error(str(exc))


class SessionStats:
    """A session's figures over the current stats window (about a second)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._stage_sums: dict[Stage, float] = {}
        self._stage_counts: dict[Stage, int] = {}
        self._frames_out = 0
        self._added_sum = 0.0
        self._faces = 0
        self._window_start = time.monotonic()

    def frame_processed(self, stage_ms: StageTimes, faces: int) -> None:
        """A frame passed both stages with `faces` faces swapped."""
        self._add_stages(stage_ms)
        self._faces = faces

    def frame_sent(self, encode_ms: float, added_ms: float) -> None:
        """An outgoing track's encoder sent a frame."""
        self._add_stages({"encode": encode_ms})
        self._frames_out += 1
        self._added_sum += added_ms

    def _add_stages(self, stage_ms: StageTimes) -> None:
        for stage, value in stage_ms.items():
            self._stage_sums[stage] = self._stage_sums.get(stage, 0.0) + value
            self._stage_counts[stage] = self._stage_counts.get(stage, 0) + 1

    def snapshot_and_reset(self) -> dict[str, Any]:
        """Means over the window now ending ("stage_ms", "fps", "added_ms", "faces"); starts the next window."""
        elapsed = max(time.monotonic() - self._window_start, 1e-6)
        result = {
            "stage_ms": {s: round(self._stage_sums[s] / self._stage_counts[s], 2) for s in self._stage_sums},
            "fps": round(self._frames_out / elapsed, 2),
            "added_ms": round(self._added_sum / self._frames_out, 2) if self._frames_out else None,
            "faces": self._faces,
        }
        self._reset()
        return result
