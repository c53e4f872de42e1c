"""`swapstream serve --record DIR`: sessions recorded on request (control channel) or all, each file finished, signed
with C2PA (the session's model named), with the forwarded sound; bad signing set-ups stop the server at start."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from provenance.errors import CertificateError
from provenance.keys import KeyFiles
from provenance.signer import SigningConfig
from provenance.verify import verify_file
from stream_server.app import create_app
from stream_server.config import ServerConfig, config_from_args
from stream_server.errors import ConfigError
from tests.fixtures.provenance import flip_video_byte, mp4_boxes
from tests.fixtures.server import Clip, RunningServer, start_server
from tests.stream_server.peer import OfferPeer, open_offer_peer, wait_for
from tests.stream_server.test_audio import EncodedOpusTrack, _opus_packets

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def recording_server(tiny_models_dir: Path, signing_keys: KeyFiles,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A swap server (colour-inverting test models) recording on request, signing with `keys init` keys."""
    server = start_server(pipeline="swap", models_dir=tiny_models_dir, max_sessions=4,
                          record_dir=tmp_path_factory.mktemp("recordings"),
                          signing=SigningConfig(signing_keys.chain, signing_keys.key))
    yield server
    server.stop()


def _manifest(models: Path) -> dict[str, Any]:
    return {m["name"]: m for m in json.loads((models / "manifest.json").read_text())["models"]}


async def _control(peer: OfferPeer, message: dict[str, Any], answer: str) -> dict[str, Any]:
    """Send a control message and wait for the first new message of type `answer`."""
    assert await wait_for(lambda: peer.channel.readyState == "open", 10)
    seen = len(peer.messages)
    peer.channel.send(json.dumps(message))
    assert await wait_for(lambda: any(m.get("type") in (answer, "error") for m in peer.messages[seen:]), 20), \
        peer.messages[seen:]
    return next(m for m in peer.messages[seen:] if m.get("type") in (answer, "error"))


def _streams(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [stream.codec_context.name for stream in container.streams]


async def test_a_session_recorded_on_request_is_signed_with_its_model_and_has_sound(
        recording_server: RunningServer, server_clip: Clip, tiny_models_dir: Path, signing_keys: KeyFiles) -> None:
    assert recording_server.config.record_dir is not None
    folder = recording_server.config.record_dir
    manifest = _manifest(tiny_models_dir)
    peer = await open_offer_peer(recording_server.url, server_clip.frames, server_clip.fps,
                                 audio=EncodedOpusTrack(_opus_packets(400)))
    try:
        assert await wait_for(lambda: peer.received.count >= 5, 20)
        assert await _control(peer, {"type": "record", "on": True}, "record") == \
            {"type": "record", "on": True, "signed": True}
        await asyncio.sleep(2.5)
        # Another model: the file so far is finished and the next one begins (one model per signed file).
        assert (await _control(peer, {"type": "options", "model": "b2a"}, "options"))["options"]["model"] == "b2a"
        await asyncio.sleep(2.0)
        assert (await _control(peer, {"type": "record", "on": False}, "record"))["on"] is False
        assert await wait_for(lambda: sum(m.get("type") == "recorded" for m in peer.messages) >= 2, 30), peer.messages
        # Recording again never overwrites a finished file: the next one gets the next number.
        assert (await _control(peer, {"type": "record", "on": True}, "record"))["on"] is True
        await asyncio.sleep(1.0)
        await _control(peer, {"type": "record", "on": False}, "record")
        assert await wait_for(lambda: sum(m.get("type") == "recorded" for m in peer.messages) >= 3, 30), peer.messages
    finally:
        await peer.close()
    recorded = [m for m in peer.messages if m.get("type") == "recorded"][:2]
    session = peer.session_id
    assert [m["file"] for m in peer.messages if m.get("type") == "recorded"] == \
        [f"{session}.mp4", f"{session}-2.mp4", f"{session}-3.mp4"]
    assert len([p for p in folder.iterdir() if p.name.startswith(session)]) == 3
    for message, model in zip(recorded, ("swap_a2b", "swap_b2a")):
        path = folder / message["file"]
        assert message["signed"] and message["frames"] >= 5, message
        assert "moof" not in [kind for kind, _, _ in mp4_boxes(path)]
        assert _streams(path) == ["h264", "aac"] and message["audio_seconds"] > 0.5, message
        result = verify_file(path, trust=signing_keys.ca)
        assert result.valid and result.state == "Trusted" and result.ai_generated, result.problems
        assert result.model is not None and (result.model.name, result.model.sha256) == \
            (model, manifest[model]["sha256"])
        assert result.title == message["file"]
    flip_video_byte(folder / recorded[0]["file"])
    tampered = verify_file(folder / recorded[0]["file"])
    assert not tampered.valid and any("mismatch" in p.code for p in tampered.problems), tampered.problems


async def test_record_all_records_every_session_until_it_ends(tiny_models_dir: Path, signing_keys: KeyFiles,
                                                              server_clip: Clip, tmp_path: Path) -> None:
    server = start_server(pipeline="swap", models_dir=tiny_models_dir, record_dir=tmp_path, record_all=True,
                          signing=SigningConfig(signing_keys.chain, signing_keys.key))
    try:
        peer = await open_offer_peer(server.url, server_clip.frames, server_clip.fps)
        try:
            assert await wait_for(lambda: peer.received.count >= 20, 30)
        finally:
            await peer.close()
        # The session ends with its peer; its file is finished and signed then.
        path = tmp_path / f"{peer.session_id}.mp4"
        assert await wait_for(path.exists, 30), list(tmp_path.iterdir())
    finally:
        server.stop()
    assert _streams(path) == ["h264"]  # the peer sent no sound
    result = verify_file(path)
    assert result.valid and result.ai_generated and result.model is not None and result.model.name == "swap_a2b"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # nothing half-written beside it


async def test_record_on_a_server_that_does_not_record_is_an_error_message(echo_server: RunningServer,
                                                                           server_clip: Clip) -> None:
    peer = await open_offer_peer(echo_server.url, server_clip.frames, server_clip.fps)
    try:
        answer = await _control(peer, {"type": "record", "on": True}, "record")
        assert answer["type"] == "error" and "--record DIR" in answer["message"]
        answer = await _control(peer, {"type": "record", "on": "yes"}, "record")
        assert answer["type"] == "error" and "true or false" in answer["message"]
    finally:
        await peer.close()


def test_record_without_signing_is_refused_unless_unsigned_is_asked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--record .*--sign-cert and --sign-key.*--record-unsigned"):
        config_from_args(["--pipeline", "echo", "--record", str(tmp_path)], environ={})
    config = config_from_args(["--pipeline", "echo", "--record", str(tmp_path), "--record-unsigned"], environ={})
    assert config.record_dir == tmp_path and config.signing is None
    with pytest.raises(ConfigError, match="--record-all needs --record DIR"):
        config_from_args(["--pipeline", "echo", "--record-all"], environ={})
    environ = {"SWAPSTREAM_RECORD": str(tmp_path), "SWAPSTREAM_SIGN_CERT": "chain.pem", "SWAPSTREAM_SIGN_KEY": "k.pem"}
    from_environment = config_from_args(["--pipeline", "echo"], environ=environ)
    assert from_environment.signing == SigningConfig(Path("chain.pem"), Path("k.pem"))


def test_a_missing_or_wrong_certificate_stops_the_server_at_start(signing_keys: KeyFiles, other_keys: KeyFiles,
                                                                  tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="does not belong to the certificate"):
        create_app(ServerConfig(pipeline="echo", record_dir=tmp_path / "rec",
                                signing=SigningConfig(signing_keys.chain, other_keys.key)))
    with pytest.raises(CertificateError, match="missing.pem"):
        create_app(ServerConfig(pipeline="echo", record_dir=tmp_path / "rec",
                                signing=SigningConfig(tmp_path / "missing.pem", signing_keys.key)))
    assert not (tmp_path / "rec").exists()  # stopped before it made anything


def test_serve_prints_the_certificate_error_and_exits_1(signing_keys: KeyFiles, other_keys: KeyFiles,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from swapstream.cli import main

    code = main(["serve", "--pipeline", "echo", "--port", "0", "--record", str(tmp_path), "--sign-cert",
                 str(signing_keys.chain), "--sign-key", str(other_keys.key)])
    assert code == 1
    assert "does not belong to the certificate" in capsys.readouterr().err


async def test_a_writer_that_falls_behind_drops_pictures_and_never_blocks_the_caller(tmp_path: Path) -> None:
    """The live path's put is non-blocking and bounded: a burst far faster than H.264 encoding is dropped, counted."""
    import time

    import numpy as np

    from stream_server.recording import QUEUED_PICTURES, FileWriter, Picture, RecordingSettings

    writer = FileWriter(tmp_path / "burst.mp4", RecordingSettings(tmp_path, None, lambda options: None),
                        model=None, source="a test", audio=False)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    started = time.perf_counter()
    for index in range(200):
        writer.put(Picture(frame, index / 15))
    putting = time.perf_counter() - started
    finished = await writer.finish()
    assert finished is not None and not finished.signed and "--record-unsigned" in finished.reason
    assert putting < 0.5, f"200 puts took {putting:.2f} s"
    assert finished.dropped > 0 and finished.frames + finished.dropped == 200
    assert finished.frames >= QUEUED_PICTURES

