"""End users (customers) and budgets over real HTTP, on SQLite and on PostgreSQL: LiteLLM's routes, and
their enforcement on the proxy path (blocked, budget, rate limits, spend)."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from tests.harness import Gateway
from tests.test_budgets import COST, MESSAGES, ROOM_FOR_TEN, metered
from tests.test_users_teams import _drop_schema

MASTER = "sk-end-users-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PATIENCE = 10.0  # the longest a test waits for the spend writer or another instance, not a speed
DEFAULT_BUDGET = 1.5 * COST  # litellm_settings.max_end_user_budget: one request fits
CONFIG: dict[str, Any] = {
    "model_list": [metered(), metered("other")],
    "general_settings": {"master_key": MASTER},
    "litellm_settings": {"max_end_user_budget": DEFAULT_BUDGET},
}


def with_database(config: dict[str, Any], url: str | None) -> dict[str, Any]:
    config = copy.deepcopy(config)
    if url is not None:
        config["general_settings"]["database_url"] = url
    return config


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    base, schema, url = None, None, None
    if request.param == "postgres":
        base = str(request.getfixturevalue("postgres_base"))
        schema = f"gw_test_{uuid.uuid4().hex[:12]}"
        url = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    gw = Gateway(with_database(CONFIG, url), env={"DATABASE_URL": "", "LITELLM_MASTER_KEY": ""})
    try:
        yield gw.start()
    finally:
        gw.stop()
        if base is not None and schema is not None:
            _drop_schema(base, schema)
    assert "unhandled error" not in gw.log(), gw.log()


async def call(http: aiohttp.ClientSession, gw: Gateway, method: str, path: str, payload: Any = None,
               key: str = MASTER, params: dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.request(method, gw.url + path, json=payload, params=params,
                            headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(content_type=None)


async def chat(http: aiohttp.ClientSession, gw: Gateway, user: str | None, key: str = MASTER,
               headers: dict[str, str] | None = None, model: str = "metered") -> tuple[int, Any]:
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "max_tokens": 2}
    if user is not None:
        body["user"] = user
    async with http.post(f"{gw.url}/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {key}", **(headers or {})}) as r:
        return r.status, await r.json()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while not await check():
        assert loop.time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_customer_crud_in_litellm_shapes(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    user = unique("acme")
    status, made = await call(http, gateway, "POST", "/end_user/new",
                              {"user_id": user, "alias": "Acme", "max_budget": 5, "budget_duration": "30d",
                               "tpm_limit": 1000, "allowed_model_region": "eu", "default_model": "metered",
                               "metadata": {"plan": "gold"}, "budget_id": None})
    assert status == 200, made
    assert made["user_id"] == user and made["alias"] == "Acme" and made["blocked"] is False
    assert made["spend"] == 0.0 and made["allowed_model_region"] == "eu" and made["default_model"] == "metered"
    budget = made["litellm_budget_table"]
    assert budget["budget_id"] == made["budget_id"] and budget["max_budget"] == 5
    assert budget["tpm_limit"] == 1000 and budget["budget_duration"] == "30d" and budget["budget_reset_at"]
    assert made["metadata"] == {"plan": "gold"}

    status, error = await call(http, gateway, "POST", "/customer/new", {"user_id": user})
    assert status == 400 and error["error"]["message"] == (
        f"Customer already exists, passed user_id={user}. Please pass a new user_id.")
    assert error["error"]["param"] == "user_id"
    status, error = await call(http, gateway, "POST", "/end_user/new",
                               {"user_id": unique("x"), "max_budget": 1, "budget_id": "b"})
    assert status == 400 and error["error"]["message"] == "Set either 'max_budget' or 'budget_id', not both."
    status, error = await call(http, gateway, "POST", "/end_user/new", {"user_id": unique("x"),
                                                                        "default_model": "nope"})
    assert status == 422 and error["error"]["message"].startswith("Default Model not on proxy.")
    status, error = await call(http, gateway, "POST", "/end_user/new", {"alias": "no id"})
    assert status == 400 and error["error"]["param"] == "user_id"
    status, error = await call(http, gateway, "POST", "/end_user/new", {"user_id": unique("x"),
                                                                        "allowed_model_region": "mars"})
    assert status == 400 and error["error"]["param"] == "allowed_model_region"

    status, shown = await call(http, gateway, "GET", "/customer/info", params={"end_user_id": user})
    assert status == 200 and shown["user_id"] == user and shown["litellm_budget_table"]["max_budget"] == 5
    assert "object_permission_id" not in shown  # None fields are left out of info, as LiteLLM does
    status, error = await call(http, gateway, "GET", "/end_user/info", params={"end_user_id": "ghost"})
    assert status == 404 and error["error"] == {"message": "End User Id=ghost does not exist in db",
                                                "type": "not_found", "param": "end_user_id", "code": "404"}

    status, updated = await call(http, gateway, "POST", "/end_user/update",
                                 {"user_id": user, "alias": "Acme Inc", "max_budget": 7, "rpm_limit": 60})
    assert status == 200 and updated["alias"] == "Acme Inc"
    assert updated["budget_id"] == made["budget_id"]  # its own budget changed, not a new one
    assert updated["litellm_budget_table"]["max_budget"] == 7 and updated["litellm_budget_table"]["rpm_limit"] == 60
    assert updated["litellm_budget_table"]["tpm_limit"] == 1000
    status, error = await call(http, gateway, "POST", "/customer/update", {"user_id": "ghost", "alias": "x"})
    assert status == 404 and error["error"]["param"] == "user_id"

    status, listed = await call(http, gateway, "GET", "/end_user/list")
    assert status == 200 and user in {c["user_id"] for c in listed}
    key = await new_key(http, gateway)
    status, error = await call(http, gateway, "GET", "/customer/list", key=key)
    assert status == 401 and error["error"]["message"] == "Admin-only endpoint. Your user role=internal_user"
    status, error = await call(http, gateway, "POST", "/end_user/new", {"user_id": unique("x")}, key=key)
    assert status == 403

    status, error = await call(http, gateway, "POST", "/end_user/delete", {"user_ids": [user, "ghost"]})
    assert status == 404 and error["error"]["message"] == "End User Id(s)=ghost do not exist in db"
    status, deleted = await call(http, gateway, "POST", "/customer/delete", {"user_ids": [user]})
    assert status == 200 and deleted == {"deleted_customers": 1,
                                         "message": f"Successfully deleted customers with ids: ['{user}']"}
    assert (await call(http, gateway, "GET", "/end_user/info", params={"end_user_id": user}))[0] == 404


async def test_budget_routes(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    tier = unique("free_tier")
    status, made = await call(http, gateway, "POST", "/budget/new",
                              {"budget_id": tier, "max_budget": 10, "rpm_limit": 5, "budget_duration": "1d"})
    assert status == 200 and made["budget_id"] == tier and made["max_budget"] == 10 and made["rpm_limit"] == 5
    assert made["budget_reset_at"] and made["created_by"] and made["model_max_budget"] is None
    status, error = await call(http, gateway, "POST", "/budget/new", {"budget_id": tier})
    assert status == 400 and error["error"]["message"] == f"Budget with id '{tier}' already exists."
    status, error = await call(http, gateway, "POST", "/budget/new", {"max_budget": -1})
    assert status == 400
    assert error["error"]["message"] == "max_budget must be a non-negative finite number. Received: -1.0"
    status, made_anonymous = await call(http, gateway, "POST", "/budget/new", {"soft_budget": 2})
    assert status == 200 and made_anonymous["budget_id"]

    status, found = await call(http, gateway, "POST", "/budget/info", {"budgets": [tier, "ghost"]})
    assert status == 200 and [b["budget_id"] for b in found] == [tier]
    status, error = await call(http, gateway, "POST", "/budget/info", {"budgets": []})
    assert status == 400 and error["error"]["message"] == "Specify list of budget id's to query. Passed in=[]"

    status, fields = await call(http, gateway, "GET", "/budget/settings", params={"budget_id": tier})
    assert status == 200
    assert [f["field_name"] for f in fields] == ["max_budget", "soft_budget", "max_parallel_requests", "tpm_limit",
                                                 "rpm_limit", "budget_duration", "model_max_budget"]
    values = {f["field_name"]: f["field_value"] for f in fields}
    assert values["max_budget"] == 10 and values["rpm_limit"] == 5 and values["tpm_limit"] is None
    status, listed = await call(http, gateway, "GET", "/budget/list")
    assert status == 200 and {tier, made_anonymous["budget_id"]} <= {b["budget_id"] for b in listed}

    status, updated = await call(http, gateway, "POST", "/budget/update", {"budget_id": tier, "max_budget": 20})
    assert status == 200 and updated["max_budget"] == 20 and updated["rpm_limit"] == 5
    status, error = await call(http, gateway, "POST", "/budget/update", {"max_budget": 20})
    assert status == 400 and error["error"]["message"] == "budget_id is required"
    status, error = await call(http, gateway, "POST", "/budget/update", {"budget_id": "ghost", "max_budget": 1})
    assert status == 404

    user = unique("tiered")
    status, customer = await call(http, gateway, "POST", "/customer/new", {"user_id": user, "budget_id": tier})
    assert status == 200 and customer["litellm_budget_table"]["max_budget"] == 20
    status, error = await call(http, gateway, "POST", "/customer/new", {"user_id": unique("x"),
                                                                        "budget_id": "ghost"})
    assert status == 400 and error["error"]["param"] == "budget_id"

    key = await new_key(http, gateway)
    for method, path in (("GET", "/budget/list"), ("POST", "/budget/delete")):
        status, error = await call(http, gateway, method, path, {"id": tier} if method == "POST" else None, key=key)
        assert status == 400 and error["error"]["message"].endswith("your role=internal_user")
    status, deleted = await call(http, gateway, "POST", "/budget/delete", {"id": tier})
    assert status == 200 and deleted["budget_id"] == tier
    status, customer = await call(http, gateway, "GET", "/customer/info", params={"end_user_id": user})
    assert status == 200 and "budget_id" not in customer  # the end user stays, with no budget
    assert (await call(http, gateway, "POST", "/budget/delete", {"id": tier}))[0] == 404


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    status, made = await call(http, gw, "POST", "/key/generate", fields)
    assert status == 200, made
    return str(made["key"])


async def test_a_blocked_end_user_is_refused(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway)
    user = unique("blocked")
    assert (await call(http, gateway, "POST", "/customer/new", {"user_id": user, "max_budget": 100}))[0] == 200
    assert (await chat(http, gateway, user, key))[0] == 200
    status, blocked = await call(http, gateway, "POST", "/end_user/block", {"user_ids": [user, unique("never")]})
    assert status == 200 and [u["blocked"] for u in blocked["blocked_users"]] == [True, True]
    for headers, named in (({}, user), ({"x-litellm-end-user-id": user}, None),
                           ({"x-litellm-customer-id": user}, "someone-else")):
        status, error = await chat(http, gateway, named, key, headers)
        assert status == 400, error
        assert error["error"]["message"] == f"User blocked from making LLM API Calls. User={user}"
    never = blocked["blocked_users"][1]["user_id"]  # blocking one never seen creates it, blocked
    assert (await chat(http, gateway, never, key))[0] == 400
    assert (await chat(http, gateway, None, key))[0] == 200  # the key itself is not blocked

    status, _ = await call(http, gateway, "POST", "/customer/unblock", {"user_ids": [user]})
    assert status == 200
    assert (await chat(http, gateway, user, key))[0] == 200
    assert (await call(http, gateway, "POST", "/end_user/update", {"user_id": user, "blocked": True}))[0] == 200
    assert (await chat(http, gateway, user, key))[0] == 400


async def test_an_end_user_budget_holds_under_a_burst(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    """Two hundred requests at once, from three keys with no budget of their own: the end user's budget
    admits exactly ten, and refuses the rest as a key's budget does."""
    keys = [await new_key(http, gateway) for _ in range(3)]
    user = unique("burst")
    assert (await call(http, gateway, "POST", "/customer/new", {"user_id": user, "max_budget": ROOM_FOR_TEN}))[0] \
        == 200
    results = await asyncio.gather(*(chat(http, gateway, user, keys[i % 3]) for i in range(200)))
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 10 and statuses.count(429) == 190
    error = next(body for status, body in results if status == 429)["error"]
    assert error["type"] == "budget_exceeded" and error["code"] == "429"
    assert error["message"].startswith(f"ExceededBudget: End User={user} over budget. Spend=")
    assert (await chat(http, gateway, unique("other"), keys[0]))[0] == 200  # others are not held back

    async def spend_shown() -> bool:
        status, shown = await call(http, gateway, "GET", "/end_user/info", params={"end_user_id": user})
        return status == 200 and shown["spend"] == pytest.approx(10 * COST)

    await eventually(spend_shown, "the end user's spend")


async def test_unknown_end_users_get_max_end_user_budget(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway)
    walk_in = unique("walk-in")
    assert (await chat(http, gateway, walk_in, key))[0] == 200
    status, error = await chat(http, gateway, walk_in, key)
    assert status == 429 and error["error"]["message"].startswith(f"ExceededBudget: End User={walk_in} ")
    assert f"Budget={DEFAULT_BUDGET}" in error["error"]["message"]

    async def recorded() -> bool:  # an end user never created is made by its first spend, as LiteLLM does
        status, shown = await call(http, gateway, "GET", "/end_user/info", params={"end_user_id": walk_in})
        return status == 200 and shown["spend"] == pytest.approx(COST) and shown["blocked"] is False

    await eventually(recorded, "the walk-in's spend")


async def test_end_user_rate_limits_from_its_budget(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway)
    tier = unique("rpm-tier")
    assert (await call(http, gateway, "POST", "/budget/new", {"budget_id": tier, "rpm_limit": 2}))[0] == 200
    user = unique("limited")
    assert (await call(http, gateway, "POST", "/customer/new", {"user_id": user, "budget_id": tier}))[0] == 200
    assert [(await chat(http, gateway, user, key))[0] for _ in range(2)] == [200, 200]
    status, error = await chat(http, gateway, user, key)
    assert status == 429 and error["error"]["message"].startswith("Rate limit reached for enduser: 2 requests")
    assert (await chat(http, gateway, unique("free"), key))[0] == 200


async def test_spend_logs_name_the_end_user(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway)
    user = unique("logged")
    assert (await call(http, gateway, "POST", "/customer/new", {"user_id": user, "max_budget": 100}))[0] == 200
    for _ in range(3):
        assert (await chat(http, gateway, None, key, {"x-litellm-end-user-id": user}))[0] == 200

    async def logged() -> bool:
        status, logs = await call(http, gateway, "GET", "/spend/logs", params={"end_user": user, "summarize": "false"})
        return status == 200 and len(logs) == 3 and all(log["end_user"] == user for log in logs)

    await eventually(logged, "the spend logs")
    status, shown = await call(http, gateway, "GET", "/end_user/info", params={"end_user_id": user})
    assert shown["spend"] == pytest.approx(3 * COST)
    status, top = await call(http, gateway, "POST", "/global/spend/end_users", {})
    assert status == 200
    mine = next(row for row in top if row["end_user"] == user)
    assert mine["total_count"] == 3 and mine["total_spend"] == pytest.approx(3 * COST)
    status, everyone = await call(http, gateway, "GET", "/global/all_end_users")
    assert status == 200 and user in everyone["end_users"]
    status, report = await call(http, gateway, "GET", "/global/spend/report", params={"group_by": "customer"})
    assert status == 200 and any(c["customer"] == user for day in report for c in day["customers"])


@pytest.fixture(params=["postgres", "sqlite"])
def pair(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[Gateway, Gateway]]:
    url = str(request.getfixturevalue("postgres_url")) if request.param == "postgres" \
        else f"sqlite:///{tmp_path / 'shared.db'}"
    first = Gateway(with_database(CONFIG, url)).start()
    second = Gateway(with_database(CONFIG, url)).start()
    yield first, second
    first.stop()
    second.stop()


async def test_two_instances_agree_on_end_users(pair: tuple[Gateway, Gateway], http: aiohttp.ClientSession) -> None:
    first, second = pair
    key = await new_key(http, first)
    user = unique("shared")
    served = 0

    async def answers(gw: Gateway, wanted: int) -> bool:
        nonlocal served
        status = (await chat(http, gw, user, key))[0]
        served += status == 200
        return status == wanted

    assert (await call(http, first, "POST", "/customer/new", {"user_id": user, "max_budget": 100}))[0] == 200
    assert await answers(second, 200)
    assert (await call(http, first, "POST", "/customer/block", {"user_ids": [user]}))[0] == 200
    await eventually(lambda: answers(second, 400), "the block to reach the second instance")
    assert (await call(http, second, "POST", "/customer/unblock", {"user_ids": [user]}))[0] == 200
    await eventually(lambda: answers(first, 200), "the unblock to reach the first instance")
    status, _ = await call(http, second, "POST", "/customer/update", {"user_id": user, "max_budget": 0})
    assert status == 200
    # A budget of 0 admits nothing: LiteLLM's kill switch.
    await eventually(lambda: answers(first, 429), "the new budget to reach the first instance")

    async def spend_on_first() -> bool:
        status, shown = await call(http, first, "GET", "/end_user/info", params={"end_user_id": user})
        return status == 200 and shown["spend"] == pytest.approx(served * COST)

    await eventually(spend_on_first, "the spend made on both instances")


async def test_a_nul_character_is_a_400_on_either_store(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    """Found by schemathesis on PostgreSQL, which keeps no text with a NUL in it: each of these was a 500
    with asyncpg's CharacterNotInRepertoireError in the log (the chat one before the upstream was asked).
    SQLite kept them, so the two stores disagreed on what a name could be."""
    nul = "a\x00b"
    for path, payload in [("/end_user/block", {"user_ids": [nul]}), ("/end_user/new", {"user_id": nul}),
                          ("/budget/delete", {"id": nul}), ("/team/delete", {"team_ids": [nul]}),
                          ("/key/generate", {"metadata": {"note": nul}}), ("/key/generate", {"metadata": {nul: 1}})]:
        status, answer = await call(http, gateway, "POST", path, payload)
        assert (status, answer["error"]["param"]) == (400, "request_body"), (path, answer)
    status, answer = await call(http, gateway, "DELETE", "/organization/delete", {"organization_ids": [nul]})
    assert status == 400 and "NUL" in answer["error"]["message"]
    for path, params in [("/end_user/info", {"end_user_id": nul}), ("/user/info", {"user_id": nul}),
                         ("/team/info", {"team_id": nul}), ("/organization/info", {"organization_id": nul}),
                         ("/spend/logs", {"user_id": nul}), ("/v1/access_group/a%00b", None)]:
        status, answer = await call(http, gateway, "GET", path, params=params)
        assert status == 400 and "NUL" in answer["error"]["message"], (path, answer)
    status, answer = await chat(http, gateway, nul)
    assert (status, answer["error"]["param"]) == (400, "user")
    # Names without one still work, and the body of a completion is relayed as sent, NUL and all.
    assert (await call(http, gateway, "GET", "/end_user/info", params={"end_user_id": "ab"}))[0] == 404
    async with http.post(f"{gateway.url}/v1/chat/completions", headers=ADMIN,
                         json={"model": "metered", "max_tokens": 2,
                               "messages": [{"role": "user", "content": nul}]}) as r:
        assert r.status == 200, await r.text()
