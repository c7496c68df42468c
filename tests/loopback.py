"""A fake upstream's server: an aiohttp app on 127.0.0.1, on a port of its own, served from a thread of its
own so that blocking SDK clients and the gateway's subprocess can both reach it.

A fake names its routes in `routes`; one that is a dataclass calls `_loopback(name)` from `__post_init__`
(its generated `__init__` does not call this class's)."""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from aiohttp import web


class Loopback:
    port: int = 0
    # aiohttp cancels a handler whose client hung up: fakes that record a client leaving want that.
    handler_cancellation = False
    client_max_size = 1024 ** 2  # aiohttp's own default

    def __init__(self, name: str) -> None:
        self._loopback(name)

    def _loopback(self, name: str) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"fake {self._thread.name} did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()  # here, not before: a fake made and never started holds no loop
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=self.client_max_size)
        self.routes(app)
        runner = web.AppRunner(app, handler_cancellation=self.handler_cancellation, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
