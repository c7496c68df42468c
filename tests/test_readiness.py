"""/health/readiness follows the database: 503 while it is unreachable, 200 again when it returns."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from tests.harness import Gateway
from tests.tcp_relay import TcpRelay

PATIENCE = 15.0


async def readiness(http: aiohttp.ClientSession, gw: Gateway) -> tuple[int, dict[str, object]]:
    async with http.get(f"{gw.url}/health/readiness") as r:
        return r.status, await r.json()


async def until_status(http: aiohttp.ClientSession, gw: Gateway, wanted: int) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        status, body = await readiness(http, gw)
        if status == wanted:
            return body
        assert loop.time() < deadline, f"readiness still {status}: {body}"
        await asyncio.sleep(0.1)


async def test_readiness_tracks_the_database(postgres_url: str, http: aiohttp.ClientSession) -> None:
    parts = urlsplit(postgres_url)
    relay = TcpRelay(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    through_relay = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}"))
    config = {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
              "general_settings": {"database_url": through_relay}}
    try:
        with Gateway(config) as gw:
            status, body = await readiness(http, gw)
            assert status == 200 and body["db"] == "connected"
            relay.cut()
            body = await until_status(http, gw, 503)
            assert body["status"] == "unhealthy" and str(body["db"]).startswith("unreachable")
            async with http.get(f"{gw.url}/health/liveliness") as r:
                assert r.status == 200  # alive, just not ready
            relay.restore()
            await until_status(http, gw, 200)
    finally:
        relay.stop()


async def test_readiness_tracks_redis(redis_base: str, redis_prefix: str, http: aiohttp.ClientSession) -> None:
    parts = urlsplit(redis_base)
    relay = TcpRelay(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    config = {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
              "router_settings": {"redis_url": f"redis://127.0.0.1:{relay.port}/0"},
              "gateway_settings": {"redis_key_prefix": redis_prefix}}
    try:
        with Gateway(config) as gw:
            status, body = await readiness(http, gw)
            assert status == 200 and body["cache"] == "connected"
            relay.cut()
            body = await until_status(http, gw, 503)
            assert str(body["cache"]).startswith("unreachable") and body["db"] == "connected"
            relay.restore()
            await until_status(http, gw, 200)
    finally:
        relay.stop()
