"""Deterministic teardown: 100 connect/disconnect cycles against a `swapstream serve` child process.

The server runs in its own process so its /proc/<pid> counts only the server's threads, fds and memory, not the
test's aiortc peers. Must show (issue 13): within 5 s of the last session ending, OS threads and open fds are
back to the idle level measured after the first session (+2), and RSS grows < 30 MB from cycle 20 to cycle 100.
"""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path

import pytest

from bench.server_process import ProcessSample, ServerProcess
from tests.fixtures.server import Clip
from tests.stream_server.peer import open_offer_peer, wait_for

CYCLES = 100
SETTLE_S = 5.0
SLACK = 2
RSS_GROWTH_MB = 30.0


async def _settled(server: ServerProcess, idle: ProcessSample | None) -> ProcessSample:
    """The sample SETTLE_S after a session ended: the first within bounds of `idle`, else the last one taken."""
    deadline = time.monotonic() + SETTLE_S
    sample = server.sample()
    while time.monotonic() < deadline:
        if idle is not None and sample.threads <= idle.threads + SLACK and sample.fds <= idle.fds + SLACK:
            return sample
        await asyncio.sleep(0.25)
        sample = server.sample()
    return sample


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_a_hundred_connect_disconnect_cycles_return_to_idle(tiny_models_dir: Path, server_clip: Clip,
                                                                 tmp_path: Path) -> None:
    rows: list[dict[str, float]] = []
    args = ["--pipeline", "swap", "--models", str(tiny_models_dir), "--max-sessions", "1", "--workers", "2"]
    started = time.monotonic()
    with ServerProcess(args, log_path=tmp_path / "server.log") as server:
        before = server.sample()
        idle: ProcessSample | None = None
        at_20: ProcessSample | None = None
        for cycle in range(1, CYCLES + 1):
            peer = await open_offer_peer(server.url, server_clip.frames, 10.0)
            try:
                assert await wait_for(lambda: peer.received.count >= 2, 30), f"cycle {cycle}: no frames came back"
            finally:
                await peer.close()
            assert await wait_for(lambda: server.sessions() == 0, 15), f"cycle {cycle}: session not freed"
            if cycle == 1:
                await asyncio.sleep(SETTLE_S)
                idle = server.sample()
                sample = idle
            elif cycle in (20, CYCLES):
                sample = await _settled(server, idle)
                at_20 = sample if cycle == 20 else at_20
            else:
                sample = server.sample()
            rows.append({"cycle": cycle, "threads": sample.threads, "fds": sample.fds,
                         "rss_mb": round(sample.rss_mb, 1), "elapsed_s": round(time.monotonic() - started, 1)})
        final = rows[-1]
    with (tmp_path / "teardown.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert idle is not None and at_20 is not None
    every_tenth = [(int(r["cycle"]), int(r["threads"]), int(r["fds"]), r["rss_mb"]) for r in rows[9::10]]
    print(f"\nteardown: {CYCLES} cycles in {time.monotonic() - started:.0f} s; before any session {before}; idle after "
          f"the first {idle}; at cycle 20 {at_20}; at the end {final}; (cycle, threads, fds, RSS MB) every 10th "
          f"cycle: {every_tenth}; all cycles in {tmp_path / 'teardown.csv'}")
    assert final["threads"] <= idle.threads + SLACK, f"threads {final['threads']} vs idle {idle.threads}"
    assert final["fds"] <= idle.fds + SLACK, f"fds {final['fds']} vs idle {idle.fds}"
    assert final["rss_mb"] - at_20.rss_mb < RSS_GROWTH_MB, f"RSS {at_20.rss_mb:.1f} -> {final['rss_mb']} MB"
