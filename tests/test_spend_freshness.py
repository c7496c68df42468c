"""Spend is current wherever it is read: the spend header, /key/info (the key itself and the admin),
/user/info and /team/info include every answered request, while its spend record still waits in
the spool (the writer here runs once a minute, so the store's totals stay behind on purpose), on
one process and on two workers; and a regenerated key keeps all the old key's spend."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.harness import Gateway

MASTER = "sk-fresh-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
MESSAGES = [{"role": "user", "content": "hi!"}]
IN_PRICE, OUT_PRICE = 0.001, 0.002
COST = 9 * IN_PRICE + 2 * OUT_PRICE  # the mock's 9 prompt and 2 answer tokens


def config() -> dict[str, Any]:
    return {"model_list": [{"model_name": "metered", "litellm_params": {
                "model": "mock/metered", "mock_response": "ok ok ok",
                "input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE}}],
            "general_settings": {"master_key": MASTER},
            "gateway_settings": {"spend_write_interval": 60}}


@pytest.fixture(params=[1, 2], ids=["one-process", "two-workers"], scope="module")
def gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    workers = request.param
    with Gateway(config(), *(["--workers", str(workers)] if workers > 1 else [])) as gw:
        gw.wait_for_workers(workers)
        yield gw


async def post(http: aiohttp.ClientSession, gw: Gateway, path: str, body: dict[str, Any]) -> Any:
    async with http.post(f"{gw.url}{path}", json=body, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def get(gw: Gateway, path: str, key: str = MASTER) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gw.url}{path}", headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def chat(gw: Gateway, key: str) -> tuple[int, aiohttp.typedefs.LooseHeaders]:
    """On a connection of its own, so that with two workers either may answer."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                             json={"model": "metered", "messages": MESSAGES, "max_tokens": 2}) as r:
            await r.read()
            return r.status, r.headers


async def written_records(gw: Gateway, key: str) -> int:
    return len(await get(gw, f"/spend/logs?api_key={key}"))


async def test_the_spend_header_counts_every_request_of_a_key_without_budget(
        gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = (await post(http, gateway, "/key/generate", {}))["key"]
    spends = []
    for _ in range(4):
        status, headers = await chat(gateway, key)
        assert status == 200
        spends.append(float(headers["x-litellm-key-spend"]))  # type: ignore[index]
        assert "x-litellm-key-max-budget" not in headers  # type: ignore[operator]
    assert spends == pytest.approx([COST, 2 * COST, 3 * COST, 4 * COST])


async def test_info_routes_include_requests_whose_record_is_not_written(
        gateway: Gateway, http: aiohttp.ClientSession) -> None:
    team = (await post(http, gateway, "/team/new", {"team_alias": "fresh"}))["team_id"]
    user = (await post(http, gateway, "/user/new", {"auto_create_key": False}))["user_id"]
    key = (await post(http, gateway, "/key/generate", {"user_id": user, "team_id": team}))["key"]
    for _ in range(5):
        assert (await chat(gateway, key))[0] == 200
    assert await written_records(gateway, key) == 0  # every record still waits for the writer
    spent = 5 * COST
    assert (await get(gateway, "/key/info", key))["info"]["spend"] == pytest.approx(spent)
    assert (await get(gateway, f"/key/info?key={key}"))["info"]["spend"] == pytest.approx(spent)
    user_info = await get(gateway, f"/user/info?user_id={user}")
    assert user_info["user_info"]["spend"] == pytest.approx(spent)
    assert [k["spend"] for k in user_info["keys"]] == pytest.approx([spent])
    team_info = await get(gateway, f"/team/info?team_id={team}")
    assert team_info["team_info"]["spend"] == pytest.approx(spent)
    assert [k["spend"] for k in team_info["keys"]] == pytest.approx([spent])


async def test_a_budget_counts_requests_whose_record_is_not_written(
        gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = (await post(http, gateway, "/key/generate", {"max_budget": 3.5 * COST}))["key"]
    assert [(await chat(gateway, key))[0] for _ in range(5)] == [200, 200, 200, 429, 429]
    assert (await get(gateway, "/key/info", key))["info"]["spend"] == pytest.approx(3 * COST)


async def test_a_regenerated_key_keeps_spend_still_being_written(http: aiohttp.ClientSession) -> None:
    with Gateway(config()) as gw:
        old = (await post(http, gw, "/key/generate", {"key_alias": "rolling"}))["key"]
        for _ in range(4):
            assert (await chat(gw, old))[0] == 200
        new = (await post(http, gw, f"/key/{old}/regenerate", {}))["key"]
        assert (await get(gw, "/key/info", new))["info"]["spend"] == pytest.approx(4 * COST)
        assert (await chat(gw, new))[0] == 200
        assert (await get(gw, "/key/info", new))["info"]["spend"] == pytest.approx(5 * COST)
        # A restart writes the spool out and forgets the counters: the store alone must agree.
        assert gw.stop() == 0
        gw.start()
        assert (await get(gw, "/key/info", new))["info"]["spend"] == pytest.approx(5 * COST)


async def test_regenerate_under_load_loses_no_spend(http: aiohttp.ClientSession) -> None:
    with Gateway(config()) as gw:
        old = (await post(http, gw, "/key/generate", {}))["key"]
        answered: list[int] = []

        async def load(key: str) -> None:
            while True:
                answered.append((await chat(gw, key))[0])

        tasks = [asyncio.ensure_future(load(old)) for _ in range(4)]
        while len(answered) < 20:
            await asyncio.sleep(0.01)
        new = (await post(http, gw, "/key/regenerate", {"key": old}))["key"]
        started = len(answered)
        while len(answered) < started + 20:
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        served = answered.count(200)
        assert answered.count(401) >= 15  # the old key stopped working when it was regenerated
        assert gw.stop() == 0
        gw.start()
        assert (await get(gw, "/key/info", new))["info"]["spend"] == pytest.approx(served * COST)
