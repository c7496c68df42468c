"""A real Redis stopped in the middle of a stream of requests, then started again on its port:
`fail_open: true` goes on serving on this instance's own buckets and says so, `fail_open: false`
answers 503, and both find Redis again by themselves."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio

from gateway.redis_keys import shared_key
from tests.harness import Gateway, free_port

MASTER = "sk-outage-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PREFIX = "outage"
PATIENCE = 20.0


class RedisServer:
    """A redis-server of this test's own: nothing persisted, stopped and started at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    async def ready(self) -> None:
        client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            await eventually(client.ping)
        finally:
            await client.aclose()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer().start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


async def eventually(probe: Any) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        try:
            if found := await probe():
                return found
        except Exception:  # noqa: BLE001 - the server may not be there yet
            pass
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def gateway_config(redis_url: str, fail_open: bool) -> dict[str, Any]:
    # The deployment's own rpm is counted in Redis too, and falls back with it.
    return {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo", "rpm": 100_000}}],
            "general_settings": {"master_key": MASTER},
            "router_settings": {"redis_url": redis_url},
            "gateway_settings": {"redis_key_prefix": PREFIX, "fail_open": fail_open}}


async def new_key(http: aiohttp.ClientSession, gw: Gateway, rpm_limit: int) -> str:
    async with http.post(f"{gw.url}/key/generate", json={"rpm_limit": rpm_limit}, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["key"])


async def chat(http: aiohttp.ClientSession, gw: Gateway, key: str) -> int:
    async with http.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}) as r:
        await r.read()
        return r.status


async def deployment_id(http: aiohttp.ClientSession, gw: Gateway) -> str:
    async with http.get(f"{gw.url}/model/info", headers=ADMIN) as r:
        return str((await r.json())["data"][0]["model_info"]["id"])


class Load:
    """Requests one after another until stopped, each status kept in order."""

    def __init__(self, http: aiohttp.ClientSession, gw: Gateway, key: str) -> None:
        self.statuses: list[int] = []
        self.task = asyncio.ensure_future(self._run(http, gw, key))

    async def _run(self, http: aiohttp.ClientSession, gw: Gateway, key: str) -> None:
        while True:
            self.statuses.append(await chat(http, gw, key))

    async def until_more(self, count: int) -> int:
        """Wait for `count` more answers than there are now; the index they start at."""
        start = len(self.statuses)
        await eventually(lambda: asyncio.sleep(0, len(self.statuses) >= start + count))
        return start

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_redis_stopped_and_restarted_mid_load(redis_server: RedisServer,
                                                    http: aiohttp.ClientSession) -> None:
    await redis_server.ready()
    with Gateway(gateway_config(redis_server.url, True)) as open_gw, \
            Gateway(gateway_config(redis_server.url, False)) as closed_gw:
        # Limits far above what the test sends: only an outage can turn a request away.
        loads = [Load(http, gw, await new_key(http, gw, 100_000)) for gw in (open_gw, closed_gw)]
        try:
            for load in loads:
                await load.until_more(5)
            redis_server.kill()
            cut = [len(load.statuses) for load in loads]
            for load in loads:
                await load.until_more(10)
            fail_open, fail_closed = (load.statuses for load in loads)
            assert set(fail_open) == {200}  # served throughout, on the instance's own buckets
            assert "limits and budgets are kept by this process until then (fail_open: true)" in open_gw.log()
            assert set(fail_closed[:cut[1]]) == {200}
            # The request in flight at the cut may have been checked already.
            assert set(fail_closed[cut[1] + 1:]) == {503}

            redis_server.start()
            await redis_server.ready()

            async def ready_and_serving(gw: Gateway, load: Load) -> bool:
                async with http.get(f"{gw.url}/health/readiness") as r:
                    ready = r.status == 200
                start = await load.until_more(3)
                return ready and set(load.statuses[start:]) == {200}

            for gw, load in zip((open_gw, closed_gw), loads):
                await eventually(lambda gw=gw, load=load: ready_and_serving(gw, load))
        finally:
            for load in loads:
                await load.stop()

        # The limits are counted in the new Redis again: one limit of 2 a minute, and its bucket there.
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            for gw in (open_gw, closed_gw):
                key = await new_key(http, gw, 2)
                assert [await chat(http, gw, key) for _ in range(3)] == [200, 200, 429]
            buckets = [k async for k in client.scan_iter(match=shared_key(PREFIX, "bucket", "rpm", "key", "*"))]
            levels = [float(await client.hget(k, "level") or 0) for k in buckets]
            assert sum(1 for level in levels if level < 1) == 2  # the two small keys, emptied in Redis
            deployment = await deployment_id(http, open_gw)
            assert await client.exists(shared_key(PREFIX, "bucket", "rpm", "deployment", deployment))
        finally:
            await client.aclose()
