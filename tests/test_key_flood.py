"""A flood of made-up keys costs neither memory nor store reads, and real keys go on being served."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.harness import Gateway

MASTER = "sk-flood-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
READS_PER_SECOND = 50  # gateway/accounts.py: UNKNOWN_READS_PER_SECOND


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    config = {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
              "general_settings": {"master_key": MASTER},
              "litellm_settings": {"callbacks": ["prometheus"]}}
    with Gateway(config, "--log-level", "warning") as gw:
        yield gw


def rss_kb(gw: Gateway) -> int:
    assert gw.process is not None
    status = Path(f"/proc/{gw.process.pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert found is not None
    return int(found.group(1))


async def flood(http: aiohttp.ClientSession, gw: Gateway, count: int, concurrency: int = 50) -> list[int]:
    statuses: list[int] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            headers = {"Authorization": f"Bearer sk-{secrets.token_urlsafe(24)}"}
            async with http.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=headers) as r:
                await r.read()
                statuses.append(r.status)

    await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
    return statuses


async def metric(http: aiohttp.ClientSession, gw: Gateway, name: str) -> float:
    async with http.get(f"{gw.url}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_made_up_keys_leave_memory_flat_and_the_store_alone(gateway: Gateway,
                                                                  http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway.url}/key/generate", json={}, headers=ADMIN) as r:
        real = {"Authorization": f"Bearer {(await r.json())['key']}"}
    async with http.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=real) as r:
        assert r.status == 200
    # Warm up, on as many keys as are measured: the allocator's arenas grow to what a flood of them holds
    # at once (more under a loaded machine), and a leak shows as growth again over the next flood.
    assert set(await flood(http, gateway, 20_000)) == {401}
    before_rss = rss_kb(gateway)
    reads_before = await metric(http, gateway, 'litellm_auth_store_reads_total{found="false"}')
    real_statuses: list[int] = []

    async def real_caller() -> None:
        for _ in range(40):
            async with http.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=real) as r:
                real_statuses.append(r.status)
            await asyncio.sleep(0.05)

    started = time.monotonic()
    statuses, _ = await asyncio.gather(flood(http, gateway, 20_000), real_caller())
    elapsed = time.monotonic() - started
    assert set(statuses) == {401} and len(statuses) == 20_000
    assert set(real_statuses) == {200}
    reads = await metric(http, gateway, 'litellm_auth_store_reads_total{found="false"}') - reads_before
    assert reads <= READS_PER_SECOND * (elapsed + 1) + READS_PER_SECOND
    assert await metric(http, gateway, "litellm_auth_unknown_reads_refused_total") > 10_000
    grown_mb = (rss_kb(gateway) - before_rss) / 1024
    assert grown_mb < 3, f"RSS grew {grown_mb:.1f} MB over 20,000 made-up keys"
    print(f"20,000 made-up keys in {elapsed:.1f}s: {reads:.0f} store reads, RSS {grown_mb:+.2f} MB")


async def test_a_key_made_during_a_flood_works_at_once(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async def make_and_use() -> int:
        await asyncio.sleep(0.3)
        async with http.post(f"{gateway.url}/key/generate", json={}, headers=ADMIN) as r:
            made = {"Authorization": f"Bearer {(await r.json())['key']}"}
        async with http.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=made) as r:
            return r.status

    _, status = await asyncio.gather(flood(http, gateway, 5_000), make_and_use())
    assert status == 200
