"""A peer that floods its control channel, run in a child process by the flood test.

    python -m tests.hostile.flood_peer BASE_URL COUNT

It connects through /offer, waits for video, sends COUNT option messages as fast as aiortc takes them, then checks
that its session still answers and streams, and prints one JSON line with what it saw. Its own event loop is busy
with the flood, so it runs apart from the test's victim peer, whose returned video measures the server.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from tests.hostile.harness import gradient_frames, offer_peer
from tests.stream_server.peer import wait_for


async def flood(base_url: str, count: int) -> dict[str, object]:
    """Flood one session's control channel; what came back."""
    async with offer_peer(base_url, gradient_frames(320, 240), 10) as peer:
        opened = await wait_for(lambda: peer.channel.readyState == "open", 20)
        streaming_before = await wait_for(lambda: peer.received.count >= 3, 20)
        print(json.dumps({"event": "flooding"}), flush=True)
        started = time.monotonic()
        for index in range(count):
            peer.channel.send(json.dumps({"type": "options", "feather": index % 50}))
            if index % 500 == 499:
                await asyncio.sleep(0)
        await wait_for(lambda: peer.channel.bufferedAmount == 0, 60)
        sent_s = time.monotonic() - started
        await asyncio.sleep(2.5)  # the server's token bucket refills
        # The server may still be receiving the flood (SCTP delivers it after the send returns; on a busy machine
        # for seconds), its bucket empty, and then the check is dropped with a "too many" error like any message:
        # ask again once a second, as a client told so would, for at most 20 s.
        answered_after = False
        deadline = time.monotonic() + 20
        while not answered_after and time.monotonic() < deadline:
            peer.channel.send(json.dumps({"type": "options", "feather": 63}))
            answered_after = await wait_for(lambda: any(m.get("type") == "options" and m["options"]["feather"] == 63
                                                        for m in peer.messages), 1.0)
        checked_s = time.monotonic() - started
        seen = peer.received.count
        streaming_after = await wait_for(lambda: peer.received.count >= seen + 5, 10)
        errors = [str(m.get("message", "")) for m in peer.messages if m.get("type") == "error"]
        return {"event": "done", "opened": opened, "streaming_before": streaming_before, "sent_s": round(sent_s, 2),
                "checked_s": round(checked_s, 2),
                "answered": sum(1 for m in peer.messages if m.get("type") == "options"),
                "dropped_errors": sum("too many control messages" in e for e in errors),
                "answered_after": answered_after, "streaming_after": streaming_after}


def main(argv: list[str]) -> int:
    result = asyncio.run(flood(argv[0], int(argv[1])))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
