"""Spend over HTTP: exact cost, usage from streams, one record per request, endpoints and totals."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment

MASTER = "sk-spend-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PRICE_IN, PRICE_OUT = 0.001, 0.002
PATIENCE = 15.0


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(upstream: FakeUpstream, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "model_list": [
            deployment("priced", upstream.base_url, input_cost_per_token=PRICE_IN, output_cost_per_token=PRICE_OUT),
            deployment("gpt-4o-mini", upstream.base_url, model="openai/gpt-4o-mini"),
            deployment("unpriced", upstream.base_url, model="openai/some-private-model"),
            {"model_name": "echo", "litellm_params": {"model": "mock/echo", "input_cost_per_token": PRICE_IN,
                                                      "output_cost_per_token": PRICE_OUT}},
        ],
        "general_settings": {"master_key": MASTER},
    }
    base, schema = None, None
    if request.param == "postgres":
        base = str(request.getfixturevalue("postgres_base"))
        schema = f"gw_spend_{uuid.uuid4().hex[:12]}"
        config["general_settings"]["database_url"] = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    try:
        with Gateway(config, env={"DATABASE_URL": ""}) as gw:
            yield gw
    finally:
        if base is not None and schema is not None:
            drop_schema(base, schema)


def drop_schema(base: str, schema: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> dict[str, Any]:
    async with http.post(f"{gw.url}/key/generate", json=fields, headers=ADMIN) as r:
        assert r.status == 200
        return await r.json()


async def chat(http: aiohttp.ClientSession, gw: Gateway, key: str, model: str = "priced",
               **extra: Any) -> tuple[str, int, bytes, aiohttp.typedefs.LooseHeaders]:
    request_id = uuid.uuid4().hex
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {key}", "X-Request-ID": request_id}) as r:
        return request_id, r.status, await r.read(), r.headers


async def record(http: aiohttp.ClientSession, gw: Gateway, request_id: str) -> dict[str, Any]:
    """The request's spend record, once the writer has moved it from the spool to the store."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        async with http.get(f"{gw.url}/spend/logs", params={"request_id": request_id}, headers=ADMIN) as r:
            found = await r.json()
        if found:
            assert len(found) == 1
            return found[0]
        assert loop.time() < deadline, f"no spend record for {request_id}"
        await asyncio.sleep(0.1)


async def test_non_streaming_cost_is_exact(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, key_alias="exact", user_id="spender", tags=["project-x"])
    request_id, status, _, headers = await chat(http, gateway, key["key"], metadata={"tags": ["req-tag"]})
    assert status == 200
    expected = 5 * PRICE_IN + 3 * PRICE_OUT
    assert float(headers["x-litellm-response-cost"]) == pytest.approx(expected)
    assert float(headers["x-litellm-key-spend"]) == pytest.approx(expected)
    log = await record(http, gateway, request_id)
    assert log["spend"] == pytest.approx(expected)
    assert (log["prompt_tokens"], log["completion_tokens"], log["total_tokens"]) == (5, 3, 8)
    assert log["api_key"] == key["token"] and log["user"] == "spender" and log["status"] == "success"
    assert log["model_group"] == "priced" and log["model"] == "priced-upstream"
    assert log["custom_llm_provider"] == "openai" and log["requester_ip_address"] == "127.0.0.1"
    assert log["request_tags"] == ["project-x", "req-tag"]
    assert log["metadata"]["key_alias"] == "exact" and log["metadata"]["usage_estimated"] is False
    assert key["key"] not in orjson.dumps(log).decode()


async def test_bundled_price_table_and_unpriced_models(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = (await new_key(http, gateway))["key"]
    request_id, _, _, _ = await chat(http, gateway, key, "gpt-4o-mini")
    log = await record(http, gateway, request_id)
    assert 0 < log["spend"] < 1e-4  # gpt-4o-mini's list price for 5 + 3 tokens
    request_id, _, _, _ = await chat(http, gateway, key, "unpriced")
    assert (await record(http, gateway, request_id))["spend"] == 0
    await asyncio.sleep(0)
    assert gateway.log().count("no price for model 'some-private-model'") == 1


async def test_missing_usage_is_estimated_and_marked(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = (await new_key(http, gateway))["key"]
    request_id, status, _, _ = await chat(http, gateway, key, fake={"no_usage": True})
    assert status == 200
    log = await record(http, gateway, request_id)
    assert log["metadata"]["usage_estimated"] is True and log["prompt_tokens"] > 0 and log["spend"] > 0


def direct_stream_body(fake: dict[str, Any], include_usage: bool) -> bytes:
    body: dict[str, Any] = {"model": "priced-upstream", "messages": [{"role": "user", "content": "hello there"}],
                            "stream": True, "fake": fake}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


@pytest.mark.parametrize("usage_null", [False, True])
async def test_stream_without_client_usage_is_untouched_and_still_priced(
        gateway: Gateway, upstream: FakeUpstream, http: aiohttp.ClientSession, usage_null: bool) -> None:
    fake = {"chunks": 4, "usage_null": usage_null}
    async with http.post(f"{upstream.base_url}/chat/completions", data=direct_stream_body(fake, False)) as r:
        direct = await r.read()
    key = (await new_key(http, gateway))["key"]
    request_id, status, through, _ = await chat(http, gateway, key, stream=True, fake=fake)
    assert status == 200
    assert through == direct  # the usage event the gateway asked for is gone, and nothing else changed
    assert upstream.seen[-1].body["stream_options"] == {"include_usage": True}
    log = await record(http, gateway, request_id)
    assert (log["prompt_tokens"], log["completion_tokens"]) == (5, 4)
    assert log["metadata"]["usage_estimated"] is False
    assert log["spend"] == pytest.approx(5 * PRICE_IN + 4 * PRICE_OUT)


async def test_stream_with_client_usage_passes_it_through(gateway: Gateway, upstream: FakeUpstream,
                                                          http: aiohttp.ClientSession) -> None:
    fake = {"chunks": 3}
    async with http.post(f"{upstream.base_url}/chat/completions", data=direct_stream_body(fake, True)) as r:
        direct = await r.read()
    key = (await new_key(http, gateway))["key"]
    request_id, _, through, _ = await chat(http, gateway, key, stream=True, fake=fake,
                                           stream_options={"include_usage": True})
    assert through == direct and b'"usage"' in through
    log = await record(http, gateway, request_id)
    assert (log["prompt_tokens"], log["completion_tokens"]) == (5, 3)


async def test_mock_stream_is_priced(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = (await new_key(http, gateway))["key"]
    request_id, status, body, _ = await chat(http, gateway, key, "echo", stream=True)
    assert status == 200 and b'"usage"' not in body
    log = await record(http, gateway, request_id)
    assert log["completion_tokens"] > 0 and log["spend"] > 0


async def test_failed_and_cancelled_requests_have_records(gateway: Gateway, upstream: FakeUpstream,
                                                          http: aiohttp.ClientSession) -> None:
    key = (await new_key(http, gateway))["key"]
    request_id, status, _, _ = await chat(http, gateway, key, fake={"status": 500, "body": "boom"})
    assert status == 500
    log = await record(http, gateway, request_id)
    assert log["status"] == "failure" and log["metadata"]["status_code"] == 500 and log["spend"] == 0
    assert log["metadata"]["error"] == "boom"

    request_id, status, _, _ = await chat(http, gateway, key, "nope")
    assert status == 404
    assert (await record(http, gateway, request_id))["status"] == "failure"

    cancelled_id = uuid.uuid4().hex
    body = {"model": "priced", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "fake": {"chunks": 300, "delay": 0.2}}
    response = await http.post(f"{gateway.url}/v1/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {key}", "X-Request-ID": cancelled_id})
    await response.content.readuntil(b"\n\n")
    response.close()
    log = await record(http, gateway, cancelled_id)
    assert log["status"] == "cancelled" and log["metadata"]["status_code"] == 499


async def test_totals_equal_the_sum_of_records(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway.url}/team/new", json={"team_id": "spenders"}, headers=ADMIN) as r:
        assert r.status == 200
    async with http.post(f"{gateway.url}/user/new", json={"user_id": "totals-user", "auto_create_key": False},
                         headers=ADMIN) as r:
        assert r.status == 200
    key = await new_key(http, gateway, user_id="totals-user", team_id="spenders")
    ids = []
    for i in range(6):
        request_id, status, _, _ = await chat(http, gateway, key["key"], stream=bool(i % 2))
        assert status == 200
        ids.append(request_id)
    logs = [await record(http, gateway, i) for i in ids]
    expected = sum(log["spend"] for log in logs)
    async with http.get(f"{gateway.url}/key/info", params={"key": key["key"]}, headers=ADMIN) as r:
        assert (await r.json())["info"]["spend"] == pytest.approx(expected)
    async with http.get(f"{gateway.url}/user/info", params={"user_id": "totals-user"}, headers=ADMIN) as r:
        assert (await r.json())["user_info"]["spend"] == pytest.approx(expected)
    async with http.get(f"{gateway.url}/team/info", params={"team_id": "spenders"}, headers=ADMIN) as r:
        assert (await r.json())["team_info"]["spend"] == pytest.approx(expected)
    async with http.get(f"{gateway.url}/spend/logs", params={"api_key": key["key"]}, headers=ADMIN) as r:
        assert sorted(x["request_id"] for x in await r.json()) == sorted(ids)


async def test_spend_endpoints(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, user_id="reporter")
    request_id, _, _, _ = await chat(http, gateway, key["key"])
    log = await record(http, gateway, request_id)
    day = log["startTime"][:10]
    params = {"start_date": day, "end_date": day, "api_key": key["token"]}
    async with http.get(f"{gateway.url}/spend/logs", params=params, headers=ADMIN) as r:
        days = await r.json()
    assert days == [{"startTime": day, "spend": pytest.approx(log["spend"]),
                     "models": {"priced": pytest.approx(log["spend"])},
                     "users": {"reporter": pytest.approx(log["spend"])}}]
    async with http.get(f"{gateway.url}/spend/logs", params={**params, "summarize": "false"}, headers=ADMIN) as r:
        assert [x["request_id"] for x in await r.json()] == [request_id]
    async with http.get(f"{gateway.url}/global/spend/report",
                        params={"start_date": day, "end_date": day, "group_by": "api_key"}, headers=ADMIN) as r:
        report = await r.json()
    entry = next(e for e in report[0]["api_keys"] if e["api_key"] == key["token"])
    assert entry["total_spend"] == pytest.approx(log["spend"]) and entry["requests"] == 1
    # A key sees only its own logs; dates must be dates.
    async with http.get(f"{gateway.url}/spend/logs", headers={"Authorization": f"Bearer {key['key']}"}) as r:
        assert {x["api_key"] for x in await r.json()} == {key["token"]}
    async with http.get(f"{gateway.url}/spend/logs", params={"user_id": "someone-else"},
                        headers={"Authorization": f"Bearer {key['key']}"}) as r:
        assert all(x["api_key"] == key["token"] for x in await r.json())
    async with http.get(f"{gateway.url}/spend/logs", params={"start_date": "yesterday"}, headers=ADMIN) as r:
        assert r.status == 400
    async with http.get(f"{gateway.url}/global/spend/report", params={"group_by": "planet"}, headers=ADMIN) as r:
        assert r.status == 400


async def test_global_spend_by_key_model_and_team(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway.url}/team/new", json={"team_id": f"big-{uuid.uuid4().hex[:6]}"},
                         headers=ADMIN) as r:
        team_id = (await r.json())["team_id"]
    big = await new_key(http, gateway, key_alias=f"big-spender-{uuid.uuid4().hex[:6]}", team_id=team_id)
    ids = [(await chat(http, gateway, big["key"], max_tokens=4000))[0] for _ in range(3)]
    spent = sum([(await record(http, gateway, request_id))["spend"] for request_id in ids])
    async with http.get(f"{gateway.url}/global/spend/keys", params={"limit": "100"}, headers=ADMIN) as r:
        keys = await r.json()
    mine = next(k for k in keys if k["api_key"] == big["token"])
    assert mine["total_spend"] == pytest.approx(spent) and mine["key_alias"] == big["key_alias"]
    assert [k["total_spend"] for k in keys] == sorted((k["total_spend"] for k in keys), reverse=True)
    async with http.get(f"{gateway.url}/global/spend/keys", params={"limit": "1"}, headers=ADMIN) as r:
        assert len(await r.json()) == 1
    async with http.get(f"{gateway.url}/global/spend/models", headers=ADMIN) as r:
        models = {m["model"]: m["total_spend"] for m in await r.json()}
    assert models["priced"] >= spent
    async with http.get(f"{gateway.url}/global/spend/teams", headers=ADMIN) as r:
        teams = await r.json()
    assert team_id in teams["teams"]
    assert next(t for t in teams["total_spend_per_team"] if t["team_id"] == team_id)["total_spend"] == \
        pytest.approx(spent)
    assert sum(day.get(team_id, 0.0) for day in teams["daily_spend"]) == pytest.approx(spent)
    async with http.get(f"{gateway.url}/global/spend/keys", headers={"Authorization": f"Bearer {big['key']}"}) as r:
        assert r.status == 403
