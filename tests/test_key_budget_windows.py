"""A key's budget_limits over HTTP: several windows at once, each refusing when spent, under a burst, across
two instances sharing Redis, after a restart, and each starting again when its period ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.store.records import BudgetWindow, KeyRecord
from gateway.store.store import KEYS, Store
from tests.harness import Gateway, spend_record
from tests.test_budgets import ADMIN, COST, MESSAGES, ROOM_FOR_TEN, base_config, chat, new_key


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with Gateway(base_config()) as gw:
        yield gw


async def key_info(http: aiohttp.ClientSession, gw: Gateway, key: str) -> dict[str, Any]:
    async with http.get(f"{gw.url}/key/info", params={"key": key}, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return dict((await r.json())["info"])


async def test_the_first_window_spent_refuses(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    made = await new_key(http, gateway, key_alias="daily-and-monthly", budget_limits=[
        {"budget_duration": "1d", "max_budget": 2.5 * COST}, {"budget_duration": "30d", "max_budget": 100}])
    assert [(w["budget_duration"], w["max_budget"]) for w in made["budget_limits"]] == [("1d", 2.5 * COST),
                                                                                      ("30d", 100.0)]
    assert all(w["reset_at"].endswith("+00:00") for w in made["budget_limits"])
    statuses = [(await chat(http, gateway, made["key"])) for _ in range(3)]
    assert [s for s, _, _ in statuses] == [200, 200, 429]
    error = statuses[-1][1]["error"]
    assert error["type"] == "budget_exceeded"
    assert error["message"].startswith("Budget has been exceeded! Key over 1d budget. Key=daily-and-monthly "
                                       f"Current cost: {2 * COST}")
    info = await key_info(http, gateway, made["key"])
    assert info["budget_limits_usage"] == {"1d": {"current_spend": round(2 * COST, 4)},
                                           "30d": {"current_spend": round(2 * COST, 4)}}
    assert info["budget_limits"][0]["reset_at"] == made["budget_limits"][0]["reset_at"]
    assert "window_spend" not in info and "budget_limits_reset_at" not in info


async def test_the_second_window_spent_refuses(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    made = await new_key(http, gateway, budget_limits=[
        {"budget_duration": "1h", "max_budget": 1.0}, {"budget_duration": "7d", "max_budget": 1.5 * COST}])
    assert (await chat(http, gateway, made["key"]))[0] == 200
    status, body, _ = await chat(http, gateway, made["key"])
    assert status == 429 and "Key over 7d budget" in body["error"]["message"]


async def test_a_burst_fits_the_smallest_window(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    made = await new_key(http, gateway, max_budget=1.0, budget_limits=[
        {"budget_duration": "30d", "max_budget": 1.0}, {"budget_duration": "1d", "max_budget": ROOM_FOR_TEN}])
    results = await asyncio.gather(*(chat(http, gateway, made["key"]) for _ in range(100)))
    assert [s for s, _, _ in results].count(200) == 10


async def test_update_sets_and_clears_windows(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    made = await new_key(http, gateway)
    assert made["budget_limits"] == []
    assert (await chat(http, gateway, made["key"]))[0] == 200
    async with http.post(f"{gateway.url}/key/update", headers=ADMIN, json={
            "key": made["key"], "budget_limits": [{"budget_duration": "1d", "max_budget": 0.5 * COST}]}) as r:
        assert r.status == 200, await r.text()
    status, body, _ = await chat(http, gateway, made["key"])
    assert status == 429 and "Key over 1d budget" in body["error"]["message"]
    async with http.post(f"{gateway.url}/key/update", headers=ADMIN,
                         json={"key": made["key"], "budget_limits": []}) as r:
        assert r.status == 200
    assert (await chat(http, gateway, made["key"]))[0] == 200


@pytest.mark.parametrize("windows", [
    [{"budget_duration": "1 day", "max_budget": 1}],
    [{"budget_duration": "1d", "max_budget": -1}],
    [{"budget_duration": "1d"}],
    [{"budget_duration": "1d", "max_budget": 1}, {"budget_duration": "1d", "max_budget": 2}],
    "daily",
])
async def test_bad_windows_are_refused(gateway: Gateway, http: aiohttp.ClientSession, windows: Any) -> None:
    async with http.post(f"{gateway.url}/key/generate", headers=ADMIN, json={"budget_limits": windows}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"].startswith("budget_limits")


async def test_a_window_starts_again_when_its_period_ends(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    made = await new_key(http, gateway, budget_limits=[{"budget_duration": "3s", "max_budget": 1.5 * COST}])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (await chat(http, gateway, made["key"]))[0] != 429:  # two requests inside one 3s period
        assert loop.time() < deadline
    while (await chat(http, gateway, made["key"]))[0] != 200:  # the next period starts from zero
        assert loop.time() < deadline
        await asyncio.sleep(0.1)


async def test_window_spend_outlives_a_restart(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Without Redis the counters live in the process: the next one starts from the spend logs."""
    config = base_config(gateway_settings={"database_path": str(tmp_path / "store.db")})
    with Gateway(config) as gw:
        made = await new_key(http, gw, budget_limits=[{"budget_duration": "1d", "max_budget": 2.5 * COST}])
        for n in range(2):
            request_id = f"window-restart-{n}-{made['token_id'][:8]}"
            async with http.post(f"{gw.url}/v1/chat/completions", json={
                    "model": "metered", "messages": MESSAGES, "max_tokens": 2},
                    headers={"Authorization": f"Bearer {made['key']}", "X-Request-ID": request_id}) as r:
                assert r.status == 200
            await spend_record(http, gw, request_id, ADMIN)
    with Gateway(config) as gw:
        status, body, _ = await chat(http, gw, made["key"])
        assert status == 429 and "Key over 1d budget" in body["error"]["message"]
        assert (await key_info(http, gw, made["key"]))["budget_limits_usage"]["1d"]["current_spend"] == round(
            2 * COST, 4)


async def test_regenerated_key_keeps_its_window_spend(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    made = await new_key(http, gateway, budget_limits=[{"budget_duration": "1d", "max_budget": 1.5 * COST}])
    assert (await chat(http, gateway, made["key"]))[0] == 200
    async with http.post(f"{gateway.url}/key/regenerate", headers=ADMIN, json={"key": made["key"]}) as r:
        assert r.status == 200
        new = await r.json()
    status, body, _ = await chat(http, gateway, new["key"])
    assert status == 429 and "Key over 1d budget" in body["error"]["message"]


async def test_two_instances_sharing_redis_hold_every_window(postgres_url: str, redis_base: str, redis_prefix: str,
                                                             http: aiohttp.ClientSession) -> None:
    config = base_config(general_settings={"database_url": postgres_url},
                         router_settings={"redis_url": redis_base},
                         # A loaded test machine can be slower than the default timeout, which would
                         # fall back to per-process counting; this test is about the shared counters.
                         gateway_settings={"redis_key_prefix": redis_prefix, "redis_timeout": 10.0})
    with Gateway(config) as first, Gateway(config) as second:
        made = await new_key(http, first, budget_limits=[{"budget_duration": "30d", "max_budget": 1.0},
                                                         {"budget_duration": "1d", "max_budget": ROOM_FOR_TEN}])
        results = await asyncio.gather(*(chat(http, (first, second)[i % 2], made["key"]) for i in range(200)))
        statuses = [s for s, _, _ in results]
        assert statuses.count(200) == 10 and statuses.count(429) == 190
        info = await key_info(http, second, made["key"])
        assert info["budget_limits_usage"]["1d"]["current_spend"] == round(10 * COST, 4)


async def test_the_reset_job_moves_each_due_window_once(store: Store) -> None:
    now = time.time()
    key = KeyRecord(token="a" * 64, key_name="sk-...aaaa", budget_limits=[
        BudgetWindow(budget_duration="1h", max_budget=1.0, reset_at=now - 5),
        BudgetWindow(budget_duration="1d", max_budget=2.0, reset_at=now + 100)], budget_limits_reset_at=now - 5)
    await store.insert(KEYS, key)
    counts = await asyncio.gather(store.reset_due_budgets(now), store.reset_due_budgets(now))
    assert sorted(counts) == [0, 1]
    stored = await store.get(KEYS, key.token)
    assert stored is not None
    assert [w.reset_at for w in stored.budget_limits] == [pytest.approx(now - 5 + 3600), pytest.approx(now + 100)]
    assert stored.budget_limits_reset_at == pytest.approx(now + 100)
    assert await store.reset_due_budgets(now) == 0
