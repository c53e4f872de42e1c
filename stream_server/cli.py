"""`swapstream serve`: parse flags once into a ServerConfig, build the app, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from stream_server.config import ServerConfig

logger = logging.getLogger(__name__)

# Small per-face numpy reductions (colour statistics) go through BLAS; OpenBLAS's own threads then fight the
# frame workers, mediapipe and ONNX Runtime for the cores and made the blend stage ~3x slower on 2 cores.
# Must be set before numpy is first imported, hence here and not in the library.
SINGLE_THREADED_BLAS = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


async def serve(config: ServerConfig, app: web.Application | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then close every peer connection and free the workers."""
    from aiohttp import web

    from stream_server.app import STATE_KEY, create_app
    from stream_server.addresses import is_loopback

    app = app or create_app(config)
    state = app[STATE_KEY]
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = config.port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            port = int(address[1])
            break
    url = f"http://{'127.0.0.1' if config.host in ('0.0.0.0', '', '::') else config.host}:{port}/"
    logger.info("swapstream serving %s pipeline (models: %s, provider: %s, disclosure mark %s)",
                config.pipeline, ", ".join(sorted(state.backends)) or "none", state.provider,
                "on" if config.disclosure_mark else "OFF")
    logger.info("open %s in a browser; WHIP ingest at %swhip, WHEP egress at %swhep/<session>", url, url, url)
    if config.token is None and not is_loopback(config.host):
        logger.warning("listening on %s without --token (--allow-no-token): anyone who can reach it can stream",
                       config.host)
    try:
        await stop.wait()
        logger.info("shutting down: closing every peer connection")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    logger.info("stopped cleanly")


def main(argv: Sequence[str]) -> int:
    """Entry point of `swapstream serve`; errors propagate as SwapstreamError for the dispatcher."""
    for name, value in SINGLE_THREADED_BLAS.items():
        os.environ.setdefault(name, value)
    from stream_server.release import limit_malloc_arenas

    limit_malloc_arenas()  # before any thread starts: sessions' native memory then returns to the system (release.py)
    from stream_server.app import create_app
    from stream_server.config import config_from_args

    config = config_from_args(argv)
    app = create_app(config)
    asyncio.run(serve(config, app))
    return 0
