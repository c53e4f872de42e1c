"""A models folder joins a running swap server and leaves it again while a real aiortc session streams: listed by
/api/models with its consent record, picked over the control channel, refused on a name clash, and on removal the
session moves to another model, its frames keep coming and the folder's backends are freed."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from stream_server.errors import ModelLoadError
from stream_server.model_folders import ModelFolders
from swapstream.manifest import Consent, ConsentFile, read_manifest, write_manifest
from tests.fixtures.server import Clip, RunningServer, start_server, write_tiny_models
from tests.stream_server.peer import OfferPeer, open_offer_peer, wait_for

pytestmark = pytest.mark.timeout(300)

CONSENT = Consent(statement="Both agreed.", people=("Ann Example", "Bo Example"), time="2025-01-01T00:00:00Z",
                  files=(ConsentFile("ann.mp4", "a" * 64),))
INVERTED_FACE = 35.0
"""Mean abs difference inside the face when the hand-built model inverts it (measured 56-59 on the synthetic clip)."""
UNCHANGED_FACE = 8.0
"""... and when the model returns the face unchanged (codec error: measured 5.1-5.6)."""


@pytest.fixture
def server(tiny_models_dir: Path) -> Iterator[RunningServer]:
    """A swap server of its own (the test changes its catalog) serving the colour-inverting models."""
    running = start_server(pipeline="swap", models_dir=tiny_models_dir, disclosure_mark=False)
    yield running
    running.stop()


def _job_folder(folder: Path, prefix: str) -> Path:
    """A Studio-like export: swap models that leave the face unchanged, named `<prefix>swap_a2b`, with consent."""
    manifest = read_manifest(write_tiny_models(folder, prefix=prefix, invert=False, digits=False))
    write_manifest(replace(manifest, models=tuple(replace(e, consent=CONSENT) for e in manifest.models)))
    return folder


def _face_errors(clip: Clip, peer: OfferPeer, indices: list[int]) -> list[float]:
    errors = []
    for index in indices:
        inside, _ = clip.face_masks(index, shrink=6, grow=12)
        got = peer.received.frames[index].astype(np.int16)
        errors.append(float(np.abs(got - peer.source.frame_for(index).astype(np.int16)).mean(axis=2)[inside].mean()))
    return errors


async def _frames_after(peer: OfferPeer, count: int, timeout: float = 30) -> list[int]:
    """The indices of the next `count` returned frames (frames kept so far are dropped)."""
    peer.received.frames.clear()
    assert await wait_for(lambda: len(peer.received.frames) >= count, timeout), \
        f"only {len(peer.received.frames)} frames came back in {timeout} s"
    return sorted(peer.received.frames)[2:]  # frames already on their way when the change was made


async def _models(server: RunningServer) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "api/models") as response:
            assert response.status == 200
            return list((await response.json())["models"])


async def test_a_folder_joins_is_picked_live_and_leaves_without_breaking_the_session(
    server: RunningServer, server_clip: Clip, tmp_path: Path
) -> None:
    state = server.state
    folders = ModelFolders(state.models, state.batcher, state.registry)

    job = _job_folder(tmp_path / "job", "job.")
    peer = await open_offer_peer(server.url, server_clip.frames, server_clip.fps, options={"color": "none"})
    try:
        assert await wait_for(lambda: peer.channel.readyState == "open", 30)
        inverted = _face_errors(server_clip, peer, await _frames_after(peer, 8))
        assert statistics.median(inverted) > INVERTED_FACE, inverted

        # the folder joins: listed with its consent, no restart
        await server.acall(lambda: folders.add(job))
        listed = {m["name"]: m for m in await _models(server)}
        assert list(listed) == ["swap_a2b", "swap_b2a", "digits", "job.swap_a2b", "job.swap_b2a"]
        assert listed["job.swap_a2b"]["consent"] == CONSENT.to_json()
        assert listed["job.swap_a2b"]["quality_limited"] is False and "consent" not in listed["swap_a2b"]

        # the live session picks it over its control channel: the face comes back unchanged
        peer.channel.send(json.dumps({"type": "options", "model": "job.swap_a2b"}))
        assert await wait_for(lambda: any(m.get("type") == "options" for m in peer.messages), 10), peer.messages
        assert [m for m in peer.messages if m.get("type") == "options"][0]["options"]["model"] == "job.swap_a2b"
        unchanged = _face_errors(server_clip, peer, await _frames_after(peer, 10))
        assert statistics.median(unchanged) < UNCHANGED_FACE, unchanged

        # a second folder with the same names is refused; nothing of it is served
        with pytest.raises(ModelLoadError, match=r"already served .*: job\.swap_a2b, job\.swap_b2a"):
            await server.acall(lambda: folders.add(_job_folder(tmp_path / "again", "job.")))
        assert [m["name"] for m in await _models(server)][-2:] == ["job.swap_a2b", "job.swap_b2a"]

        # the folder leaves while frames stream: the session is moved to a2b and told why, frames keep coming
        backend = state.catalog.backends["job.swap_a2b"]
        await server.acall(lambda: folders.remove(job))
        assert await wait_for(lambda: any("removed" in m.get("reason", "") for m in peer.messages), 10)
        moved = next(m for m in peer.messages if "reason" in m)
        assert moved["type"] == "options" and moved["options"]["model"] == "a2b"
        assert [m["name"] for m in await _models(server)] == ["swap_a2b", "swap_b2a", "digits"]
        inverted_again = _face_errors(server_clip, peer, await _frames_after(peer, 10))
        assert statistics.median(inverted_again) > INVERTED_FACE, inverted_again
        # no frame failed, and the removed model's backend is closed and out of the batcher
        assert not [m for m in peer.messages if m.get("type") == "error" and "frame failed" in m["message"]]
        with pytest.raises(RuntimeError, match="closed"):
            backend.run(np.zeros((1, 3, 64, 64), np.float32))
        assert state.batcher is not None
        with pytest.raises(KeyError):
            state.batcher.infer("job.swap_a2b", np.zeros((1, 3, 64, 64), np.float32), "test")
        # and the session can still name the remaining models
        peer.channel.send(json.dumps({"type": "options", "model": "job.swap_a2b"}))
        assert await wait_for(lambda: any(m.get("type") == "error" for m in peer.messages), 10)
        error = next(m for m in peer.messages if m.get("type") == "error")
        assert "no swap model 'job.swap_a2b'; choices: swap_a2b, swap_b2a, a2b, b2a" in error["message"]
    finally:
        await peer.close()
