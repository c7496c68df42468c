"""Budgets over HTTP: the limit holds under concurrency, on one instance and on two sharing Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from gateway.redis_keys import shared_key
from tests.harness import Gateway
from tests.tcp_relay import TcpRelay

MASTER = "sk-budget-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
IN_PRICE, OUT_PRICE = 0.001, 0.002
# The mock counts 4 characters a token and rounds up: this prompt is 9 tokens, "ok ok ok" 2 tokens,
# which is also what the reservation estimates, so each request reserves exactly what it costs.
MESSAGES = [{"role": "user", "content": "hi!"}]
COST = 9 * IN_PRICE + 2 * OUT_PRICE
ROOM_FOR_TEN = 10.5 * COST


def metered(name: str = "metered") -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": f"mock/{name}", "mock_response": "ok ok ok",
                                                   "input_cost_per_token": IN_PRICE,
                                                   "output_cost_per_token": OUT_PRICE}}


def base_config(**extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"model_list": [metered(), metered("other")], "general_settings": {"master_key": MASTER}}
    for section, values in extra.items():
        config.setdefault(section, {}).update(values) if isinstance(values, dict) else config.update({section: values})
    return config


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> dict[str, Any]:
    async with http.post(f"{gw.url}/key/generate", json=fields, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def chat(http: aiohttp.ClientSession, gw: Gateway, key: str, model: str = "metered",
               **extra: Any) -> tuple[int, Any, Any]:
    body = {"model": model, "messages": MESSAGES, "max_tokens": 2, **extra}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(), r.headers


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = base_config(teams=[{"team_id": "frugal", "budget_limit": ROOM_FOR_TEN}])
    with Gateway(config) as gw:
        yield gw


async def test_two_hundred_concurrent_requests_fit_ten(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, max_budget=ROOM_FOR_TEN, key_alias="ten")
    results = await asyncio.gather(*(chat(http, gateway, key["key"]) for _ in range(200)))
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 10 and statuses.count(429) == 190
    error = next(body for status, body, _ in results if status == 429)["error"]
    assert error["type"] == "budget_exceeded" and error["code"] == "429"
    assert error["message"].startswith("Budget has been exceeded! Key=ten Current cost: ")
    assert f"Max budget: {ROOM_FOR_TEN}. Not spent yet" in error["message"]  # 0.0065 left, a request is 0.013
    assert (await chat(http, gateway, key["key"]))[0] == 429  # still full once everything has settled


async def test_spend_headers_and_soft_budget(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, max_budget=1.0, soft_budget=1.5 * COST)
    status, _, headers = await chat(http, gateway, key["key"])
    assert status == 200
    assert float(headers["x-litellm-key-spend"]) == pytest.approx(COST)
    assert float(headers["x-litellm-key-max-budget"]) == 1.0
    assert "x-litellm-soft-budget-exceeded" not in headers
    status, _, headers = await chat(http, gateway, key["key"])
    assert status == 200 and headers["x-litellm-soft-budget-exceeded"] == "true"  # a warning, not a block


async def test_model_budget_on_a_key(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, model_max_budget={"metered": {"budget_limit": 1.5 * COST,
                                                                     "time_period": "30d"}})
    assert (await chat(http, gateway, key["key"]))[0] == 200
    status, body, _ = await chat(http, gateway, key["key"])
    assert status == 429 and "Model=metered" in body["error"]["message"]
    assert (await chat(http, gateway, key["key"], "other"))[0] == 200


async def test_team_budget_from_the_config(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    keys = [await new_key(http, gateway, team_id="frugal") for _ in range(3)]
    results = await asyncio.gather(*(chat(http, gateway, keys[i % 3]["key"]) for i in range(30)))
    assert [s for s, _, _ in results].count(200) == 10
    message = next(body for status, body, _ in results if status == 429)["error"]["message"]
    assert message.startswith("Budget has been exceeded! Team=frugal ")


async def test_a_refused_reservation_says_why_and_how_to_reserve_less(gateway: Gateway,
                                                                      http: aiohttp.ClientSession) -> None:
    """Nothing spent, but a request with no max_tokens reserves 1024 output tokens (2.057 here), more than
    the budget of 1: the refusal says so instead of only "Current cost: 0.0"."""
    key = await new_key(http, gateway, max_budget=1.0, key_alias="reserving")
    body = {"model": "metered", "messages": MESSAGES}
    async with http.post(f"{gateway.url}/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {key['key']}"}) as r:
        assert r.status == 429
        message = (await r.json())["error"]["message"]
    assert message.startswith("Budget has been exceeded! Key=reserving Current cost: 0.0, Max budget: 1.0. "
                              "Not spent yet: this request is held to what it may cost, 2.057 ")
    assert "reserve_output_tokens (1024)" in message and "1 is left" in message
    assert message.endswith("Set a lower max_tokens to reserve less.")
    assert (await chat(http, gateway, key["key"]))[0] == 200  # max_tokens 2: it fits


async def test_spend_calculate_prices_a_call_before_or_after(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async def cost(payload: dict[str, Any]) -> tuple[int, Any]:
        async with http.post(f"{gateway.url}/spend/calculate", json=payload, headers=ADMIN) as r:
            return r.status, await r.json()

    after = {"model": "metered", "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
    assert await cost({"completion_response": after}) == (200, {"cost": pytest.approx(10 * IN_PRICE + 5 * OUT_PRICE)})
    status, before = await cost({"model": "metered", "messages": [{"role": "user", "content": "x" * 400}]})
    assert status == 200 and before["cost"] == pytest.approx(107 * IN_PRICE)  # 430 bytes of JSON, 4 a token
    status, listed = await cost({"model": "gpt-4o", "messages": MESSAGES})  # not served here: the price table
    assert status == 200 and listed["cost"] > 0
    assert (await cost({"model": "no-such-model", "messages": MESSAGES}))[0] == 404
    assert (await cost({"model": "metered"}))[0] == 400


async def test_user_budget(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway.url}/user/new", json={"user_id": "thrifty", "max_budget": 2.5 * COST},
                         headers=ADMIN) as r:
        made = await r.json()
    results = [await chat(http, gateway, made["key"]) for _ in range(4)]
    assert [s for s, _, _ in results] == [200, 200, 429, 429]
    assert "User=thrifty" in results[-1][1]["error"]["message"]


async def test_kill_switch_and_status(http: aiohttp.ClientSession) -> None:
    config = base_config(litellm_settings={"max_budget": 0}, gateway_settings={"budget_exceeded_status": 400})
    with Gateway(config) as gw:
        status, body, _ = await chat(http, gw, MASTER)
        assert status == 400 and body["error"]["type"] == "budget_exceeded"
        assert body["error"]["message"] == "Budget has been exceeded! Proxy Current cost: 0.0, Max budget: 0.0"
        async with http.get(f"{gw.url}/key/list", headers=ADMIN) as r:
            assert r.status == 200  # the management API still answers


async def test_two_instances_sharing_redis_hold_one_budget(postgres_url: str, redis_base: str, redis_prefix: str,
                                                           http: aiohttp.ClientSession) -> None:
    config = base_config(general_settings={"database_url": postgres_url},
                         router_settings={"redis_url": redis_base},
                         gateway_settings={"redis_key_prefix": redis_prefix, "redis_timeout": 30.0})
    with Gateway(config) as first, Gateway(config) as second:
        assert "budgets: shared through Redis" in first.log()
        key = await new_key(http, first, max_budget=ROOM_FOR_TEN)
        results = await asyncio.gather(*(chat(http, (first, second)[i % 2], key["key"]) for i in range(200)))
        statuses = [status for status, _, _ in results]
        assert statuses.count(200) == 10 and statuses.count(429) == 190


async def test_two_instances_without_redis_each_hold_their_own(tmp_path: Path,
                                                               http: aiohttp.ClientSession) -> None:
    """Why the README says to configure Redis for a fleet: without it each instance counts alone."""
    config = base_config(gateway_settings={"database_path": str(tmp_path / "shared.db")})
    with Gateway(config) as first, Gateway(config) as second:
        key = await new_key(http, first, max_budget=ROOM_FOR_TEN)
        for gw in (first, second):
            # Each counter starts from the spend stored when it is first read; read both before either
            # instance has spent, with a request whose reservation alone is over the budget.
            status, body, _ = await chat(http, gw, key["key"], max_tokens=100_000)
            assert status == 429 and body["error"]["type"] == "budget_exceeded", body
        results = await asyncio.gather(*(chat(http, (first, second)[i % 2], key["key"]) for i in range(200)))
        assert [s for s, _, _ in results].count(200) == 20


async def test_shutdown_lets_a_settlement_under_way_finish(redis_base: str, redis_prefix: str,
                                                           http: aiohttp.ClientSession) -> None:
    """A request's reservation is settled after its answer is sent. SIGTERM right then must not close
    Redis under the settlement, or the reservation would count against the budget until it resets."""
    import redis.asyncio

    address = urlsplit(redis_base)
    relay = TcpRelay(address.hostname or "127.0.0.1", address.port or 6379).start()
    config = base_config(router_settings={"redis_url": f"redis://127.0.0.1:{relay.port}/0"},
                         gateway_settings={"redis_key_prefix": redis_prefix, "redis_timeout": 30.0})
    gw = Gateway(config)
    try:
        await asyncio.to_thread(gw.start)
        key = await new_key(http, gw, max_budget=ROOM_FOR_TEN)
        relay.delay = 0.5  # every Redis round trip now takes a second: the settlement is still under way
        status, _, _ = await chat(http, gw, key["key"])
        assert status == 200
        assert await asyncio.to_thread(gw.stop) == 0
    finally:
        gw.stop()
        relay.stop()
    assert "could not settle" not in gw.log(), gw.log()
    client = redis.asyncio.Redis.from_url(redis_base, decode_responses=True)
    try:
        pattern = shared_key(redis_prefix, "budget", "key", "*")
        counters = [await client.hgetall(name) async for name in client.scan_iter(match=pattern)]
    finally:
        await client.aclose()
    assert len(counters) == 1, counters
    assert float(counters[0]["reserved"]) == pytest.approx(0.0, abs=1e-12)
    assert float(counters[0]["spent"]) == pytest.approx(COST)
