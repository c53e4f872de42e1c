"""`swapstream client`: a 10 s video goes through a real server over loopback WebRTC and comes back as a playable MP4."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from clients import python_client
from clients.errors import ClientConfigError, ConnectionFailed
from clients.python_client import ClientConfig, run_client
from clients.webrtc import ServerEndpoint, parse_options


def _probe(path: Path) -> tuple[float, int, tuple[int, int], list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        duration = float(container.duration / av.time_base)
        return duration, len(frames), (stream.codec_context.width, stream.codec_context.height), frames


@pytest.mark.slow
def test_client_round_trips_a_10_second_video_into_a_playable_mp4(inverting_server, ten_second_video: Path,
                                                                   tmp_path: Path, capsys) -> None:
    output = tmp_path / "swapped.mp4"
    code = python_client.main(["--url", inverting_server.url, "--input", str(ten_second_video), "--output", str(output)])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    in_duration, in_count, in_size, in_frames = _probe(ten_second_video)
    out_duration, out_count, out_size, out_frames = _probe(output)
    assert out_size == in_size
    assert abs(out_duration - in_duration) <= 0.1 * in_duration, (out_duration, in_duration)
    # The server keeps only the newest frame, so on a loaded 2-core machine it drops some; most must arrive.
    assert out_count >= 0.5 * in_count, (out_count, in_count)
    # It went through the swap pipeline: the recording is not the input (the test models invert face colours).
    middle_in, middle_out = in_frames[in_count // 2].astype(int), out_frames[out_count // 2].astype(int)
    assert np.abs(middle_in - middle_out).max() > 100


def test_bad_flags_name_the_flag(tmp_path: Path) -> None:
    video = tmp_path / "in.mp4"
    video.write_bytes(b"")
    with pytest.raises(ClientConfigError, match="--url"):
        ServerEndpoint(url="localhost:8080")
    with pytest.raises(ClientConfigError, match="--input"):
        ClientConfig(ServerEndpoint("http://127.0.0.1:1"), tmp_path / "missing.mp4", tmp_path / "out.mp4")
    with pytest.raises(ClientConfigError, match="--output"):
        ClientConfig(ServerEndpoint("http://127.0.0.1:1"), video, tmp_path / "out.avi")
    with pytest.raises(ClientConfigError, match="--options"):
        parse_options("[1, 2]")


async def test_unreachable_server_is_a_clear_error(ten_second_video: Path, tmp_path: Path) -> None:
    config = ClientConfig(ServerEndpoint("http://127.0.0.1:9", timeout_s=5), ten_second_video, tmp_path / "o.mp4")
    with pytest.raises(ConnectionFailed, match="cannot reach the server at http://127.0.0.1:9/offer"):
        await run_client(config)


async def test_wrong_token_is_reported_with_a_hint(ten_second_video: Path, tmp_path: Path) -> None:
    from tests.fixtures.server import start_server

    server = start_server(pipeline="echo", token="sesame")
    try:
        config = ClientConfig(ServerEndpoint(server.url, token="wrong"), ten_second_video, tmp_path / "o.mp4")
        with pytest.raises(ConnectionFailed, match=r"HTTP 401.*--token"):
            await run_client(config)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def two_second_video(tmp_path_factory: pytest.TempPathFactory, face_frames: list[np.ndarray]) -> Path:
    """Two seconds of the synthetic face (the 10 s clip is for the slow round-trip test)."""
    from faces.media import write_video

    return write_video(tmp_path_factory.mktemp("client_media") / "face_2s.mp4", face_frames, fps=15.0)


def test_a_recording_made_by_the_client_is_signed_and_verifies(inverting_server, tiny_models_dir: Path,
                                                               two_second_video: Path, signing_keys, tmp_path: Path,
                                                               capsys) -> None:
    import json

    from provenance.cli import verify_main
    from tests.fixtures.provenance import flip_video_byte, mp4_boxes

    output = tmp_path / "signed.mp4"
    code = python_client.main(["--url", inverting_server.url, "--input", str(two_second_video),
                               "--output", str(output), "--options", '{"model": "b2a"}',
                               "--sign-cert", str(signing_keys.chain), "--sign-key", str(signing_keys.key)])
    assert code == 0
    assert "C2PA-signed" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["signed.mp4"]  # nothing half-written left beside it
    # c2pa-python signs whole-file MP4s: the client's recorder must not fragment it.
    assert "moof" not in [kind for kind, _, _ in mp4_boxes(output)]

    assert verify_main([str(output), "--trust", str(signing_keys.ca), "--json"], environ={}) == 0
    result = json.loads(capsys.readouterr().out)
    expected = next(m for m in json.loads((tiny_models_dir / "manifest.json").read_text())["models"]
                    if m["name"] == "swap_b2a")
    assert result["valid"] and result["state"] == "Trusted" and result["ai_generated"]
    assert result["title"] == "signed.mp4"  # the final name, not the temporary file it was signed in
    assert result["model"] == {"name": "swap_b2a", "sha256": expected["sha256"]}

    flip_video_byte(output)
    assert verify_main([str(output)], environ={}) == 1
    assert "assertion.bmffHash.mismatch" in capsys.readouterr().out


async def test_a_bad_certificate_fails_before_anything_is_sent(ten_second_video: Path, signing_keys, other_keys,
                                                                tmp_path: Path) -> None:
    from provenance.errors import CertificateError
    from provenance.signer import SigningConfig

    # The server address is unreachable: a certificate error (not a connection error) proves the check ran first.
    config = ClientConfig(ServerEndpoint("http://127.0.0.1:9", timeout_s=5), ten_second_video, tmp_path / "o.mp4",
                          signing=SigningConfig(signing_keys.chain, other_keys.key))
    with pytest.raises(CertificateError, match="does not belong to the certificate"):
        await run_client(config)
    assert not (tmp_path / "o.mp4").exists()


async def test_without_credentials_the_client_warns_how_to_get_signed_recordings(ten_second_video: Path, tmp_path: Path,
                                                                                 caplog) -> None:
    config = ClientConfig(ServerEndpoint("http://127.0.0.1:9", timeout_s=5), ten_second_video, tmp_path / "o.mp4")
    with caplog.at_level("WARNING"), pytest.raises(ConnectionFailed):
        await run_client(config)
    warning = next(r.getMessage() for r in caplog.records if "will not be signed" in r.getMessage())
    assert "swapstream keys init" in warning and "SWAPSTREAM_SIGN_CERT" in warning
    assert not (tmp_path / "o.mp4").exists()


async def test_the_recorded_model_is_the_one_the_server_runs_for_the_session(inverting_server, echo_server,
                                                                             tiny_models_dir: Path) -> None:
    import json

    from clients.signing import fetch_session_model

    manifest = {m["name"]: m for m in json.loads((tiny_models_dir / "manifest.json").read_text())["models"]}
    endpoint = ServerEndpoint(inverting_server.url)
    default = await fetch_session_model(endpoint, {})  # the server's default model, a2b
    assert default is not None and (default.name, default.sha256) == ("swap_a2b", manifest["swap_a2b"]["sha256"])
    by_name = await fetch_session_model(endpoint, {"model": "swap_b2a"})
    assert by_name is not None and by_name.sha256 == manifest["swap_b2a"]["sha256"]
    # No model changes the frames: nothing AI-generated to assert.
    assert await fetch_session_model(endpoint, {"swap": False}) is None
    assert await fetch_session_model(ServerEndpoint(echo_server.url), {}) is None
