"""One serving process: listen, serve until SIGTERM, then drain in-flight requests and exit."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable

from aiohttp import web

from gateway.app import build_app, path_prefixes
from gateway.config import Config

log = logging.getLogger("gateway")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(config: Config, host: str, port: int, reuse_port: bool) -> None:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(config, host, port, reuse_port))


async def serve(config: Config, host: str, port: int, reuse_port: bool) -> None:
    app = await build_app(config)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        handler_cancellation=True,  # a client that leaves cancels its upstream request at once
        access_log=None,
        shutdown_timeout=config.gateway_settings.drain_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=2048)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(f"gateway: cannot listen on {host}:{port}: {exc.strerror}") from None
    prefixes = ", ".join(p or "/" for p in path_prefixes(config))
    log.info("serving %d deployments on http://%s:%d under %s", len(config.model_list), host, port, prefixes)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("draining: no new connections, in-flight requests get up to %.0fs",
             config.gateway_settings.drain_timeout)
    await runner.cleanup()
    log.info("stopped")

