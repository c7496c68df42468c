"""Several gateway processes on one database behave as one gateway for keys."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness import Gateway

MASTER = "sk-fleet-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hello"}]}
# How long a change may take to reach the other instance before the test gives up;
# the change log is polled every 0.25 s, so this bounds a wait, not a speed.
PATIENCE = 10.0


def fleet_config(database_url: str) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}},
                       {"model_name": "other", "litellm_params": {"model": "mock/other"}}],
        "general_settings": {"master_key": MASTER, "database_url": database_url},
    }


@pytest.fixture(params=["postgres", "sqlite"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = Gateway(fleet_config(url)).start()
    second = Gateway(fleet_config(url)).start()
    yield first, second
    first.stop()
    second.stop()


async def status_of(http: aiohttp.ClientSession, gw: Gateway, raw: str, model: str = "echo") -> int:
    async with http.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "model": model},
                         headers={"Authorization": f"Bearer {raw}"}) as r:
        await r.read()
        return r.status


async def eventually(http: aiohttp.ClientSession, gw: Gateway, raw: str, wanted: int, model: str = "echo") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while (got := await status_of(http, gw, raw, model)) != wanted:
        assert loop.time() < deadline, f"{gw.url} still answers {got}, not {wanted}"
        await asyncio.sleep(0.05)


async def admin_post(http: aiohttp.ClientSession, gw: Gateway, path: str, payload: Any) -> Any:
    async with http.post(gw.url + path, json=payload, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_keys_blocks_updates_and_deletes_cross_instances(pair: tuple[Gateway, Gateway],
                                                              http: aiohttp.ClientSession) -> None:
    first, second = pair
    raw = (await admin_post(http, first, "/key/generate", {"models": ["echo"]}))["key"]
    # Made on the first instance, usable on the second at once: a miss there reads the store.
    assert await status_of(http, second, raw) == 200
    assert await status_of(http, second, raw, "other") == 401

    await admin_post(http, first, "/key/block", {"key": raw})
    await eventually(http, second, raw, 401)
    await admin_post(http, second, "/key/unblock", {"key": raw})
    await eventually(http, first, raw, 200)

    await admin_post(http, first, "/key/update", {"key": raw, "models": ["echo", "other"]})
    await eventually(http, second, raw, 200, "other")

    await admin_post(http, second, "/key/delete", {"keys": [raw]})
    await eventually(http, first, raw, 401)
    assert await status_of(http, second, raw) == 401


async def test_workers_share_one_sqlite_file(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """--workers N: every worker reads the same file and sees the others' writes."""
    config = fleet_config(f"sqlite:///{tmp_path / 'workers.db'}")
    with Gateway(config, "--workers", "2") as gw:
        made = await asyncio.gather(*(admin_post(http, gw, "/key/generate", {}) for _ in range(20)))
        results = await asyncio.gather(*(status_of(http, gw, m["key"]) for m in made for _ in range(3)))
        assert results == [200] * 60
        raw = made[0]["key"]
        await admin_post(http, gw, "/key/block", {"key": raw})
        # Both workers must come to refuse it: ask in batches wide enough that each answers some.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        while set(statuses := await asyncio.gather(*(status_of(http, gw, raw) for _ in range(40)))) != {401}:
            assert loop.time() < deadline, f"a worker still accepts the blocked key: {statuses}"
            await asyncio.sleep(0.05)


async def test_with_redis_a_change_lands_everywhere_at_once(postgres_url: str, redis_base: str, redis_prefix: str,
                                                            http: aiohttp.ClientSession) -> None:
    """The change log is polled only every 60 s here, so only the Redis channel can carry the block."""
    config = {**fleet_config(postgres_url),
              "router_settings": {"redis_url": redis_base},
              "gateway_settings": {"redis_key_prefix": redis_prefix, "change_poll_interval": 60,
                                   "redis_timeout": 30.0}}
    with Gateway(config) as first, Gateway(config) as second:
        raw = (await admin_post(http, first, "/key/generate", {}))["key"]
        assert await status_of(http, second, raw) == 200  # now cached on the second instance
        await admin_post(http, first, "/key/block", {"key": raw})
        await eventually(http, second, raw, 401)
        await admin_post(http, second, "/key/unblock", {"key": raw})
        await eventually(http, first, raw, 200)
