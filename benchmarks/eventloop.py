"""Run a coroutine on uvloop when it is installed, and serve until a signal."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, but on uvloop when available: the gateway is expected to use it too."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def serve_until_signal(start: Callable[[], Awaitable[web.BaseRunner]], host: str, port: int) -> None:
    """Serve a runner on host:port until SIGINT/SIGTERM, then clean up.

    The harness stops its servers with SIGTERM; cleanup must still run so
    pooled client sessions close without warnings in the logs.
    """
    runner = await start()
    # backlog well above any benchmark concurrency so connects never queue in the kernel
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()
