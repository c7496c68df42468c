"""A Redis that stops answering without refusing (a network dropping packets) in the middle of
load: requests wait at most one `redis_timeout` for it, then `fail_open` decides at once for every
Redis-backed part (rate limits, budgets, deployment limits); the gateway finds Redis again by itself."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.harness import Gateway
from tests.tcp_relay import TcpRelay

MASTER = "sk-blackhole-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
TIMEOUT = 0.3
CONCURRENCY = 4


def gateway_config(redis_url: str, prefix: str, fail_open: bool) -> dict[str, object]:
    return {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo", "rpm": 1_000_000}}],
            "general_settings": {"master_key": MASTER},
            "router_settings": {"redis_url": redis_url},
            "gateway_settings": {"redis_key_prefix": prefix, "fail_open": fail_open, "redis_timeout": TIMEOUT}}


class Timed:
    """Requests from several clients at once, each answer's status and duration kept with its start."""

    def __init__(self, http: aiohttp.ClientSession, url: str, key: str) -> None:
        self.answers: list[tuple[float, int, float]] = []  # started, status, seconds
        self.tasks = [asyncio.ensure_future(self._run(http, url, key)) for _ in range(CONCURRENCY)]

    async def _run(self, http: aiohttp.ClientSession, url: str, key: str) -> None:
        while True:
            started = time.monotonic()
            async with http.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                 json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}) as r:
                await r.read()
            self.answers.append((started, r.status, time.monotonic() - started))

    async def more(self, count: int) -> None:
        target = len(self.answers) + count
        while len(self.answers) < target:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_redis_that_drops_packets_costs_each_request_at_most_one_timeout(
        redis_base: str, redis_prefix: str, http: aiohttp.ClientSession, fail_open: bool) -> None:
    parts = urlsplit(redis_base)
    relay = TcpRelay(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    try:
        settings = gateway_config(f"redis://127.0.0.1:{relay.port}/0", redis_prefix, fail_open)
        with Gateway(settings) as gw:
            async with http.post(f"{gw.url}/key/generate", headers=ADMIN,
                                 json={"rpm_limit": 1_000_000, "tpm_limit": 100_000_000, "max_budget": 1000,
                                       "max_parallel_requests": 100}) as r:
                key = (await r.json())["key"]
            load = Timed(http, gw.url, key)
            try:
                await load.more(20)
                assert {status for _, status, _ in load.answers} == {200}
                relay.blackhole()
                cut = time.monotonic()
                await load.more(60)
                during = [(status, took) for started, status, took in load.answers if started >= cut]
                relay.restore()
                await asyncio.sleep(1.5)  # a few of the link's pings
                healed = time.monotonic()
                await load.more(40)
                after = [status for started, status, _ in load.answers if started >= healed]
            finally:
                await load.stop()
            slow = [took for _, took in during if took >= TIMEOUT]
            # Only the requests already asking Redis when the packets stopped wait for the timeout;
            # every later one is answered without asking.
            assert len(slow) <= CONCURRENCY, slow
            assert max(took for _, took in during) < TIMEOUT + 1.0
            statuses = {status for status, _ in during}
            assert statuses == ({200} if fail_open else {503}), statuses
            policy = "kept by this process until then (fail_open: true)" if fail_open else \
                "get 503 until then (fail_open: false)"
            assert "Redis unreachable" in gw.log() and policy in gw.log()
            assert after and set(after) == {200}
            assert "Redis reachable again" in gw.log()
    finally:
        relay.stop()
