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
