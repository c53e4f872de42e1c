"""Signaling: POST /offer (JSON), WHIP ingest (RFC 9725) and WHEP egress, with bearer auth and size limits.

Every handler reaches shared state through request.app[STATE_KEY]. Bad requests raise SignalingError,
which the error middleware (app.py) turns into HTTP 400 with the message.

The WHIP/WHEP resource URLs (`Location`, `Link`) are paths without scheme or host, so a client resolves them
against the URL it used, a reverse proxy's included; behind a proxy that publishes this server under a path
prefix and says so in `X-Forwarded-Prefix` (deploy/haproxy's /node/<server>), they start with that prefix
(`forwarded_prefix`). `Forwarded` and `X-Forwarded-Proto`/`-Host` are not needed for that and are not read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from rtc.jitterbuffer import JitterBufferMode, install_on_receiver
from stream_server.app import STATE_KEY
from stream_server.errors import ConfigError, SignalingError
from stream_server.guards import (
    JSON_CONTENT_TYPE,
    check_origin,
    parse_json,
    read_bounded,
    require_bearer,
    require_content_type,
)
from stream_server.session import Session, SessionKind, UnknownSessionError

logger = logging.getLogger(__name__)

SDP_CONTENT_TYPE = "application/sdp"
# A proxy's path prefix is echoed into Location headers: path segments of unreserved characters only.
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*")
_MAX_PREFIX_LENGTH = 256


def check_token(request: web.Request) -> None:
    """Require `Authorization: Bearer <token>` when the server has a token."""
    require_bearer(request, request.app[STATE_KEY].config.token)


async def read_body_bytes(request: web.Request) -> bytes:
    """The request body within --max-body-kb (413, before reading when announced) and --body-timeout (408)."""
    config = request.app[STATE_KEY].config
    return await read_bounded(request, config.max_body_bytes, config.body_timeout_s)


async def read_body(request: web.Request) -> str:
    """The request body as text (its charset, else UTF-8), within the server's size limit."""
    body = await read_body_bytes(request)
    try:
        return body.decode(request.charset or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise SignalingError(f"request body is not text: {exc}") from exc


def forwarded_prefix(request: web.Request) -> str:
    """The path prefix a reverse proxy publishes this server under (X-Forwarded-Prefix, without a trailing "/"),
    "" without one; resource paths are that prefix + "/whip/<id>" etc. Checked before anything is created:
    SignalingError (400) for a prefix that is not a plain path like `/node/media1` (segments of letters, digits
    and `-._~`, none of them `.` or `..`).
    """
    prefix = request.headers.get("X-Forwarded-Prefix", "").strip().rstrip("/")
    segments = prefix.split("/")
    if prefix and (len(prefix) > _MAX_PREFIX_LENGTH or segments[0] != ""
                   or not all(_PREFIX_SEGMENT.fullmatch(segment) for segment in segments[1:])):
        raise SignalingError(f"X-Forwarded-Prefix {prefix[:_MAX_PREFIX_LENGTH]!r} is not a path prefix like "
                             "/node/media1 (segments of letters, digits and -._~)")
    return prefix


MEDIA_SECTION_LIMITS = {"video": 1, "audio": 1, "application": 1}
"""The m= sections an offer may have, at most this many of each: one video, one audio, one DataChannel."""


def _check_sdp(sdp: Any, what: str) -> str:
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalingError(f"{what}: the SDP is empty or not a string")
    if not sdp.lstrip().startswith("v=0"):
        raise SignalingError(f"{what}: not an SDP offer (it must start with 'v=0')")
    sections = _media_sections(sdp)
    _check_media_sections([kind for kind, _ in sections], what)
    for kind, lines in sections:
        if kind == "audio":
            _check_opus_first(lines, what)
    if "a=fingerprint:" not in sdp:
        raise SignalingError(f"{what}: the offer has no DTLS fingerprint (a=fingerprint); WebRTC media must be encrypted")
    return sdp


def _media_sections(sdp: str) -> list[tuple[str, list[str]]]:
    """Each m= section of an SDP: its kind ("video", "audio", ...) and its lines, the m= line first."""
    sections: list[tuple[str, list[str]]] = []
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            sections.append((line[2:].split(" ", 1)[0], [line]))
        elif sections:
            sections[-1][1].append(line)
    return sections


def _check_media_sections(kinds: list[str], what: str) -> None:
    """At least one video section; at most MEDIA_SECTION_LIMITS of each kind; no other kind."""
    if "video" not in kinds:
        raise SignalingError(f"{what}: the offer has no video (m=video) section")
    for kind in dict.fromkeys(kinds):
        limit = MEDIA_SECTION_LIMITS.get(kind, 0)
        if kinds.count(kind) > limit:
            found = f"{kinds.count(kind)} m={kind} sections"
            raise SignalingError(f"{what}: the offer has {found}; the server takes at most one video, one audio "
                                 "and one DataChannel (m=application) section")


def _check_opus_first(lines: list[str], what: str) -> None:
    """The audio section must offer Opus first: the server forwards the peer's Opus packets as they are."""
    formats = lines[0].split()[3:]
    first = formats[0] if formats else None
    if first is None or not any(line.lower().startswith(f"a=rtpmap:{first} opus/48000") for line in lines):
        raise SignalingError(f"{what}: the audio (m=audio) section must offer Opus (opus/48000/2) first: the "
                             "server forwards the audio as it is, in Opus")


def _install_jitter_buffers(pc: RTCPeerConnection, mode: JitterBufferMode) -> None:
    """Put the chosen jitter buffer (--jitter-buffer) on every video receiver."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            install_on_receiver(transceiver.receiver, mode)


async def _negotiate(pc: RTCPeerConnection, sdp: str, what: str, jitter_buffer: JitterBufferMode,
                     before_answer: Callable[[], None] | None = None) -> RTCSessionDescription:
    """Apply the remote offer and make our answer; aiortc's errors become SignalingError (400)."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    except Exception as exc:  # noqa: BLE001 - aiortc raises ValueError, KeyError, InvalidStateError...
        raise SignalingError(f"{what}: cannot apply the offer: {type(exc).__name__}: {exc}") from exc
    _install_jitter_buffers(pc, jitter_buffer)
    if before_answer is not None:
        before_answer()
    try:
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # noqa: BLE001
        raise SignalingError(f"{what}: cannot answer the offer: {type(exc).__name__}: {exc}") from exc
    answer: RTCSessionDescription = pc.localDescription
    return answer


async def _start_session(request: web.Request, sdp: str, options: dict[str, Any], kind: SessionKind,
                         what: str) -> tuple[Session, RTCSessionDescription]:
    state = request.app[STATE_KEY]
    try:
        session = state.registry.create(kind, state.config.default_options.updated(options))
    except ConfigError as exc:
        raise SignalingError(f"{what}: {exc}") from exc
    try:
        answer = await _negotiate(session.pc, sdp, what, state.config.jitter_buffer)
    except BaseException:
        await session.close()
        raise
    logger.info("session %s started (%s) from %s", session.id[:8], kind, request.remote)
    return session, answer


def _check_offer_request(request: web.Request) -> None:
    """What /offer asks before reading the body: the token, a JSON body, and a page of an allowed origin.

    A web page can POST text/plain or a form to any address without the browser asking first ("simple"
    requests); requiring application/json makes the browser ask, and the Origin check refuses other sites.
    """
    check_token(request)
    require_content_type(request, JSON_CONTENT_TYPE, "POST /offer")
    check_origin(request, request.app[STATE_KEY].config.allowed_origins, "POST /offer")


async def handle_offer(request: web.Request) -> web.Response:
    """POST /offer: {"sdp", "type": "offer", "options"} -> {"sdp", "type": "answer", "session_id"}."""
    _check_offer_request(request)
    params = parse_json(await read_body(request), "POST /offer")
    if not isinstance(params, dict):
        raise SignalingError('POST /offer: body must be a JSON object {"sdp", "type", "options"}')
    if params.get("type") != "offer":
        raise SignalingError(f'POST /offer: "type" must be "offer", got {params.get("type")!r}')
    options = params.get("options") or {}
    if not isinstance(options, dict):
        raise SignalingError('POST /offer: "options" must be a JSON object')
    sdp = _check_sdp(params.get("sdp"), "POST /offer")
    session, answer = await _start_session(request, sdp, options, "offer", "POST /offer")
    return web.json_response({"sdp": answer.sdp, "type": answer.type, "session_id": session.id})


async def handle_whip_post(request: web.Request) -> web.Response:
    """POST /whip (RFC 9725): an SDP offer -> 201 Created, Location /whip/<id>, the SDP answer."""
    check_token(request)
    require_content_type(request, SDP_CONTENT_TYPE, "POST /whip")
    prefix = forwarded_prefix(request)
    sdp = _check_sdp(await read_body(request), "POST /whip")
    session, answer = await _start_session(request, sdp, {}, "whip", "POST /whip")
    return web.Response(status=201, text=answer.sdp, content_type=SDP_CONTENT_TYPE,
                        headers={"Location": f"{prefix}/whip/{session.id}", "ETag": f'"{session.id}"',
                                 "Link": f'<{prefix}/whep/{session.id}>; rel="alternate"'})


def _whip_session(request: web.Request) -> Session:
    """The live WHIP session named in the path; 404 for unknown ids and for /offer sessions (not WHIP resources)."""
    session = request.app[STATE_KEY].registry.get(request.match_info["session_id"])
    if session.kind != "whip":
        raise UnknownSessionError(f"no live WHIP session {session.id!r} (an /offer session ends when its peer "
                                  "closes)")
    return session


async def handle_whip_delete(request: web.Request) -> web.Response:
    """DELETE /whip/<id>: end the ingest session and its viewers."""
    check_token(request)
    session = _whip_session(request)
    await session.close()
    return web.Response(status=200, text="session ended\n")


async def handle_whep_post(request: web.Request) -> web.Response:
    """POST /whep/<id>: a viewer's SDP offer -> 201, Location /whep/<id>/<viewer>, answer with the swapped video
    (and the session's audio when the viewer's offer has an audio section and the publisher sends audio)."""
    check_token(request)
    require_content_type(request, SDP_CONTENT_TYPE, "POST /whep")
    prefix = forwarded_prefix(request)
    state = request.app[STATE_KEY]
    session = state.registry.get(request.match_info["session_id"])
    sdp = _check_sdp(await read_body(request), "POST /whep")
    session.check_viewer_room()  # again: the session may have ended while the body arrived
    pc = RTCPeerConnection()
    viewer_id = session.add_viewer(pc)

    def add_tracks() -> None:
        pc.addTrack(session.subscribe())
        audio = session.subscribe_audio() if any(t.kind == "audio" for t in pc.getTransceivers()) else None
        if audio is not None:
            pc.addTrack(audio)

    try:
        answer = await _negotiate(pc, sdp, "POST /whep", state.config.jitter_buffer, before_answer=add_tracks)
        session.check_open()  # and once more: it may have ended while the answer was made
    except BaseException:
        await session.remove_viewer(viewer_id)
        await pc.close()
        raise
    logger.info("session %s: WHEP viewer %s joined", session.id[:8], viewer_id[:8])
    return web.Response(status=201, text=answer.sdp, content_type=SDP_CONTENT_TYPE,
                        headers={"Location": f"{prefix}/whep/{session.id}/{viewer_id}"})


async def handle_whep_delete(request: web.Request) -> web.Response:
    """DELETE /whep/<id>/<viewer>: end one viewer."""
    check_token(request)
    state = request.app[STATE_KEY]
    session = state.registry.get(request.match_info["session_id"])
    if not await session.remove_viewer(request.match_info["viewer_id"]):
        raise UnknownSessionError(f"session {session.id} has no viewer {request.match_info['viewer_id']!r}")
    return web.Response(status=200, text="viewer ended\n")


def add_routes(app: web.Application) -> None:
    """Register the signaling endpoints."""
    app.router.add_post("/offer", handle_offer)
    app.router.add_post("/whip", handle_whip_post)
    app.router.add_delete("/whip/{session_id}", handle_whip_delete)
    app.router.add_post("/whep/{session_id}", handle_whep_post)
    app.router.add_delete("/whep/{session_id}/{viewer_id}", handle_whep_delete)
