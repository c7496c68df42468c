"""One serving process: listen, serve until SIGTERM, then drain in-flight requests and exit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.app import build_app, path_prefixes
from gateway.config import Config
from gateway.errors import ApiError

log = logging.getLogger("gateway")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class _EnvelopeRequestHandler(RequestHandler):
    """aiohttp answers HTTP it cannot parse (a bad request line, a broken chunk) in plain text and
    logs a traceback at ERROR for each; here the client gets the OpenAI envelope and the log one
    debug line, so a stream of junk cannot flood the log."""

    __slots__ = ()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            log.error("error serving %s %s", request.method, request.path, exc_info=exc)
        else:
            log.debug("unparseable HTTP from %s: %s", request.remote, message or exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        text = (message or "").strip() or (f"bad HTTP request: {exc}" if status < 500 else "internal error")
        response = ApiError(status, text, "invalid_request_error" if status < 500 else "internal_server_error"
                            ).response()
        response.force_close()
        return response


class _EnvelopeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp offers no hook for the connection handler's class; the subclass adds no state.
        server.__class__ = _EnvelopeServer
        return server


def run(config: Config, host: str, port: int, reuse_port: bool, worker: bool = False) -> None:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(config, host, port, reuse_port, worker))


async def serve(config: Config, host: str, port: int, reuse_port: bool, worker: bool = False) -> None:
    app = await build_app(config, access_source=f"gateway.access[{os.getpid()}]" if worker else "gateway.access")
    runner = GatewayRunner(
        app,
        handle_signals=False,
        handler_cancellation=True,  # a client that leaves cancels its upstream request at once
        access_log=None,
        # aiohttp reads 0 as "wait for ever"; a drain_timeout of 0 means "do not wait".
        shutdown_timeout=max(config.gateway_settings.drain_timeout, 0.001),
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=2048)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(f"gateway: cannot listen on {host}:{port}: {exc.strerror}") from None
    prefixes = ", ".join(p or "/" for p in path_prefixes(config))
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    log.info("serving %d deployments on http://%s:%d under %s (event loop: %s)", len(config.model_list), host,
             port, prefixes, loop_name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("draining: no new connections, in-flight requests get up to %.0fs",
             config.gateway_settings.drain_timeout)
    await runner.cleanup()
    log.info("stopped")

