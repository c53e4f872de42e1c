"""`swapstream serve` as a user runs it: flags and SWAPSTREAM_* variables, the URL log line, clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from stream_server.config import ServerConfig, SessionOptions, config_from_args
from stream_server.errors import ConfigError
from tests.fixtures.server import Clip
from tests.stream_server.peer import open_offer_peer, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_flags_override_environment_which_overrides_defaults(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    env = {"SWAPSTREAM_PORT": "9001", "SWAPSTREAM_TOKEN": "from-env", "SWAPSTREAM_DISCLOSURE_MARK": "0",
           "SWAPSTREAM_MODELS": str(tmp_path), "SWAPSTREAM_DETECT_EVERY": "5"}
    config = config_from_args(["--port", "9002"], env)
    assert config.port == 9002 and config.token == "from-env" and config.disclosure_mark is False
    assert config.detect_every == 5 and config.models_dir == tmp_path and config.host == "127.0.0.1"
    defaults = config_from_args(["--models", str(tmp_path)], {})
    assert defaults.disclosure_mark is True and defaults.port == 8080 and defaults.jitter_buffer == "marker"
    assert config_from_args(["--models", str(tmp_path), "--no-disclosure-mark"], {}).disclosure_mark is False


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--max-sessions", "0"], {}, "--max-sessions"),
        (["--detect-every", "0"], {}, "--detect-every"),
        (["--batch-wait-ms", "5"], {}, "--batch-wait-ms"),
        (["--models", "/nonexistent/models"], {}, "--models /nonexistent/models"),
        ([], {"SWAPSTREAM_PORT": "eighty"}, "SWAPSTREAM_PORT"),
        ([], {"SWAPSTREAM_DISCLOSURE_MARK": "maybe"}, "SWAPSTREAM_DISCLOSURE_MARK"),
        (["--feather", "-2"], {}, "--model/--feather/--color"),
    ],
)
def test_bad_values_name_the_flag_or_variable(argv: list[str], env: dict[str, str], message: str) -> None:
    full = ["--pipeline", "echo"] + argv if "--models" not in argv else argv
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_args(full, env)


def test_config_is_frozen_and_options_validate() -> None:
    config = ServerConfig(pipeline="echo")
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]
    options = SessionOptions().updated({"swap": False, "feather": 6.0, "type": "options"})
    assert options.swap is False and options.feather == 6
    with pytest.raises(ConfigError, match="color"):
        SessionOptions().updated({"color": "sepia"})
    with pytest.raises(ConfigError, match="unknown option"):
        SessionOptions().updated({"zoom": 2})


def test_keep_mouth_is_off_unless_asked_for() -> None:
    assert config_from_args(["--pipeline", "echo"], {}).default_options.keep_mouth is False
    assert config_from_args(["--pipeline", "echo", "--keep-mouth"], {}).default_options.keep_mouth is True
    assert config_from_args(["--pipeline", "echo"], {"SWAPSTREAM_KEEP_MOUTH": "1"}).default_options.keep_mouth is True
    assert SessionOptions().updated({"keep_mouth": True}).keep_mouth is True
    with pytest.raises(ConfigError, match="option 'keep_mouth' must be true or false"):
        SessionOptions().updated({"keep_mouth": "yes"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(60)
def test_serve_logs_the_url_answers_and_stops_cleanly_on_sigterm() -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWAPSTREAM_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "swapstream.cli", "serve", "--pipeline", "echo", "--max-sessions", "2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "open http://" in line:
                break
        assert any(f"open http://127.0.0.1:{port}/" in line for line in lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert b'"status": "ok"' in response.read()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "stopped cleanly" in output


def test_serve_refuses_a_missing_models_folder_with_exit_1(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "swapstream.cli", "serve", "--models", str(tmp_path / "none")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"--models {tmp_path / 'none'}" in result.stderr and "manifest.json" in result.stderr


@pytest.mark.timeout(90)
async def test_sigterm_closes_live_peers_cleanly(server_clip: Clip) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "swapstream.cli", "serve", "--pipeline", "echo", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "healthz", timeout=1):
                    break
            except OSError:
                await asyncio.sleep(0.2)
        peer = await open_offer_peer(url, server_clip.frames, server_clip.fps)
        assert await wait_for(lambda: peer.received.count >= 3, 20), "no frames before SIGTERM"
        process.send_signal(signal.SIGTERM)
        # The server closes the peer connection (DTLS close_notify), so the client sees it end.
        assert await wait_for(lambda: peer.pc.connectionState == "closed", 15), peer.pc.connectionState
        await peer.close()
        output, _ = await asyncio.get_running_loop().run_in_executor(None, lambda: process.communicate(timeout=20))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "closing 1 session(s)" in output and "stopped cleanly" in output
