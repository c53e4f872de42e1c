"""Signaling: POST /offer (JSON), WHIP ingest (RFC 9725) and WHEP egress, with bearer auth and size limits.

Every handler reaches shared state through request.app[STATE_KEY]. Bad requests raise SignalingError,
which the error middleware (app.py) turns into HTTP 400 with the message.
"""

from __future__ import annotations

import logging
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


def _check_sdp(sdp: Any, what: str) -> str:
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalingError(f"{what}: the SDP is empty or not a string")
    if not sdp.lstrip().startswith("v=0"):
        raise SignalingError(f"{what}: not an SDP offer (it must start with 'v=0')")
    if "\nm=video" not in sdp.replace("\r\n", "\n"):
        raise SignalingError(f"{what}: the offer has no video (m=video) section")
    if "a=fingerprint:" not in sdp:
        raise SignalingError(f"{what}: the offer has no DTLS fingerprint (a=fingerprint); WebRTC media must be encrypted")
    return sdp


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
    sdp = _check_sdp(await read_body(request), "POST /whip")
    session, answer = await _start_session(request, sdp, {}, "whip", "POST /whip")
    return web.Response(status=201, text=answer.sdp, content_type=SDP_CONTENT_TYPE,
                        headers={"Location": f"/whip/{session.id}", "ETag": f'"{session.id}"',
                                 "Link": f'</whep/{session.id}>; rel="alternate"'})


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
    """POST /whep/<id>: a viewer's SDP offer -> 201, Location /whep/<id>/<viewer>, answer with the swapped video."""
    check_token(request)
    require_content_type(request, SDP_CONTENT_TYPE, "POST /whep")
    state = request.app[STATE_KEY]
    session = state.registry.get(request.match_info["session_id"])
    sdp = _check_sdp(await read_body(request), "POST /whep")
    session.check_viewer_room()  # again: the session may have ended while the body arrived
    pc = RTCPeerConnection()
    viewer_id = session.add_viewer(pc)

    def add_video() -> None:
        pc.addTrack(session.subscribe())

    try:
        answer = await _negotiate(pc, sdp, "POST /whep", state.config.jitter_buffer, before_answer=add_video)
        session.check_open()  # and once more: it may have ended while the answer was made
    except BaseException:
        await session.remove_viewer(viewer_id)
        await pc.close()
        raise
    logger.info("session %s: WHEP viewer %s joined", session.id[:8], viewer_id[:8])
    return web.Response(status=201, text=answer.sdp, content_type=SDP_CONTENT_TYPE,
                        headers={"Location": f"/whep/{session.id}/{viewer_id}"})


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
