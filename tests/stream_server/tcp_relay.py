"""A loopback TCP relay that a test can cut and restore: the network between a media server and Triton failing.

Real sockets both ways (the server's gRPC channel to Triton passes through it unchanged). `cut()` closes every
relayed connection and stops listening, so the server sees connections reset and then refused, as when Triton's
host goes away; `restore()` listens on the same port again. It runs its own event loop in a thread, so tests
can cut it from any loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class TcpRelay:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port` until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-relay", daemon=True)
        self._thread.start()
        self.restore()

    @property
    def address(self) -> str:
        """`127.0.0.1:port`, what clients connect to instead of the target."""
        return f"127.0.0.1:{self.port}"

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    def restore(self) -> None:
        """Listen (again) and relay new connections."""
        self._call(self._listen())

    def cut(self) -> None:
        """Close every relayed connection and refuse new ones."""
        self._call(self._cut())

    def close(self) -> None:
        """Cut, then stop the relay's thread."""
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, target_writer}
        await asyncio.gather(self._pump(client_reader, target_writer), self._pump(target_reader, client_writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
