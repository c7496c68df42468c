"""A TCP relay on loopback that a test can cut and restore: a database or cache outage on demand."""

from __future__ import annotations

import asyncio
import socket
import threading


class TcpRelay:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new ones.
    `blackhole()` keeps every connection open and accepts new ones but passes nothing on, as a
    network that drops packets without a reset; `restore()` ends either (connections that lost
    bytes to the blackhole are reset then, as TCP would give up on them).
    `delay` (seconds, settable at any time) holds each piece that much before passing it on."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-relay", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._swallowed: set[asyncio.StreamWriter] = set()
        self.dropping = False
        self.delay = 0.0

    def start(self) -> TcpRelay:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        self._call(self._cut())

    def blackhole(self) -> None:
        self.dropping = True

    def restore(self) -> None:
        self._call(self._restore())

    async def _restore(self) -> None:
        self.dropping = False
        for writer in list(self._swallowed):
            writer.transport.abort()
        self._swallowed.clear()
        if self._server is None:
            await self._listen()

    def stop(self) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.dropping:
            self._swallowed.add(client_writer)
            while await client_reader.read(65536):
                pass
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update({client_writer, upstream_writer})

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    if self.dropping:
                        self._swallowed.add(writer)
                        continue
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.transport.abort()
                self._writers.discard(writer)

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
