"""/user/* and /team/* over real HTTP against a real gateway, once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config import parse_config
from gateway.services import sync_config_teams
from gateway.store.database import open_database
from gateway.store.store import TEAMS, Store
from tests.harness import Gateway

MASTER = "sk-master-users-teams"
HELLO = [{"role": "user", "content": "hello"}]
CONFIG: dict[str, Any] = {
    "model_list": [
        {"model_name": "echo", "litellm_params": {"model": "mock/echo"}},
        {"model_name": "other", "litellm_params": {"model": "mock/other"}},
    ],
    # These tests name every member themselves; the master key's own membership is tested on its own.
    "general_settings": {"master_key": MASTER, "disable_auto_add_proxy_admin_to_teams": True},
    "teams": [{"team_id": "cfg-team", "models": ["echo"], "budget_limit": 5}],
}
ROLES = ("proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer")


def _drop_schema(base: str, schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    config = copy.deepcopy(CONFIG)
    base, schema = None, None
    if request.param == "postgres":
        # Skips, or fails under CI=true, when PostgreSQL is not there (tests/conftest.py).
        base = str(request.getfixturevalue("postgres_base"))
        schema = f"gw_test_{uuid.uuid4().hex[:12]}"
        config["general_settings"]["database_url"] = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    # An operator's DATABASE_URL or LITELLM_MASTER_KEY must not change which backend or key the test uses.
    gw = Gateway(config, env={"DATABASE_URL": "", "LITELLM_MASTER_KEY": ""})
    try:  # `with Gateway(...)` would leave the process and its log open if the start failed
        yield gw.start()
    finally:
        gw.stop()
        if base is not None and schema is not None:
            _drop_schema(base, schema)
    assert "unhandled error" not in gw.log(), gw.log()


class Api:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def call(self, method: str, path: str, payload: Any = None, *, key: str = MASTER,
                   params: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=payload, data=data, params=params,
                                     headers={"Authorization": f"Bearer {key}"}) as response:
            return response.status, await response.json(content_type=None)

    async def post(self, path: str, payload: Any = None, *, key: str = MASTER) -> tuple[int, Any]:
        return await self.call("POST", path, payload, key=key)

    async def get(self, path: str, *, key: str = MASTER, **params: str) -> tuple[int, Any]:
        return await self.call("GET", path, key=key, params=params)

    async def ok(self, method: str, path: str, payload: Any = None, **params: str) -> Any:
        status, body = await self.call(method, path, payload, params=params or None)
        assert status == 200, body
        return body

    async def chat(self, key: str, model: str = "echo") -> tuple[int, Any]:
        return await self.call("POST", "/v1/chat/completions", {"model": model, "messages": HELLO}, key=key)

    async def new_key(self, **fields: Any) -> str:
        return str((await self.ok("POST", "/key/generate", fields))["key"])


@pytest.fixture
async def api(gateway: Gateway, http: aiohttp.ClientSession) -> AsyncIterator[Api]:
    yield Api(http, gateway.url)


def error(status: int, body: Any, expected: int, type: str | None = None, text: str | None = None) -> dict[str, Any]:
    """The OpenAI envelope, with `code` as a string; its inner object."""
    assert status == expected, body
    inner = body["error"]
    assert set(inner) == {"message", "type", "param", "code"}
    assert inner["code"] == str(expected)
    assert "{'error'" not in inner["message"]
    if type is not None:
        assert inner["type"] == type, inner
    if text is not None:
        assert text in inner["message"], inner
    return dict(inner)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- /user/new ---------------------------------------------------------------------------------------------

async def test_user_new_makes_the_user_and_a_key_that_works(api: Api) -> None:
    user_id = unique("u")
    made = await api.ok("POST", "/user/new", {
        "user_id": user_id, "user_email": f"{user_id}@example.com", "user_alias": "Ann", "max_budget": 10,
        "budget_duration": "30d", "models": ["echo"], "tpm_limit": 100, "key_alias": f"{user_id}-key",
        "duration": "1d", "metadata": {"cost_center": "42"}})
    assert made["user_id"] == user_id
    assert made["user_role"] == "internal_user"
    assert made["user_email"] == f"{user_id}@example.com"
    assert made["max_budget"] == 10 and made["budget_duration"] == "30d"
    assert made["budget_reset_at"] is not None and made["budget_reset_at"] > made["created_at"]
    assert made["key"].startswith("sk-") and made["key_name"] == f"sk-...{made['key'][-4:]}"
    assert made["key_alias"] == f"{user_id}-key" and made["expires"] is not None
    assert made["teams"] == [] and made["spend"] == 0.0
    assert "token" not in made and "token_id" not in made

    status, answer = await api.chat(made["key"])
    assert status == 200, answer
    status, denied = await api.chat(made["key"], "other")
    error(status, denied, 401, "key_model_access_denied")  # the key took the user's models
    key_info = (await api.ok("GET", "/key/info", key=made["key"]))["info"]
    assert key_info["user_id"] == user_id and key_info["tpm_limit"] == 100
    assert key_info["max_budget"] is None  # the budget is the user's, not the key's
    assert key_info["metadata"] == {"cost_center": "42"}


async def test_user_new_without_a_key(api: Api) -> None:
    made = await api.ok("POST", "/user/new", {"auto_create_key": False, "user_role": "proxy_admin_viewer"})
    assert made["key"] == "" and len(made["user_id"]) == 32
    assert made["user_role"] == "proxy_admin_viewer"
    info = await api.ok("GET", "/user/info", user_id=made["user_id"])
    assert info["keys"] == []


@pytest.mark.parametrize("role", ROLES)
async def test_user_new_takes_every_role(api: Api, role: str) -> None:
    made = await api.ok("POST", "/user/new", {"user_role": role, "auto_create_key": False})
    assert made["user_role"] == role


async def test_user_new_rejects_an_unknown_role(api: Api) -> None:
    status, body = await api.post("/user/new", {"user_role": "superuser"})
    assert error(status, body, 400, text="user_role must be one of")["param"] == "user_role"


async def test_user_new_duplicates_are_409(api: Api) -> None:
    user_id = unique("dup")
    await api.ok("POST", "/user/new", {"user_id": user_id, "user_email": f"{user_id}@x.io", "auto_create_key": False})
    status, body = await api.post("/user/new", {"user_id": user_id})
    assert error(status, body, 409, text=f"User with id {user_id} already exists")["message"] == \
        f"User with id {user_id} already exists"
    status, body = await api.post("/user/new", {"user_email": f"{user_id}@x.io"})
    error(status, body, 409, text=f"User with email {user_id}@x.io already exists")


async def test_user_new_with_a_taken_key_alias_makes_nothing(api: Api) -> None:
    alias = unique("alias")
    await api.new_key(key_alias=alias)
    user_id = unique("u")
    status, body = await api.post("/user/new", {"user_id": user_id, "key_alias": alias})
    error(status, body, 400, text="already exists")
    status, body = await api.get("/user/info", user_id=user_id)
    error(status, body, 404)


async def test_user_new_joins_its_teams(api: Api) -> None:
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id})
    user_id = unique("u")
    made = await api.ok("POST", "/user/new", {"user_id": user_id, "teams": [team_id], "auto_create_key": False})
    assert made["teams"] == [team_id]
    team = (await api.ok("GET", "/team/info", team_id=team_id))["team_info"]
    assert {"role": "user", "user_id": user_id, "user_email": None} in team["members_with_roles"]
    status, body = await api.post("/user/new", {"teams": ["no-such-team"]})
    error(status, body, 400, text="Team not found, passed team_id=no-such-team")



async def test_user_new_with_team_id_joins_it_and_its_key_is_the_teams(api: Api) -> None:
    """LiteLLM's older `team_id` on /user/new: the user becomes a member, the key made along a team key."""
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id, "models": ["echo"]})
    user_id = unique("u")
    made = await api.ok("POST", "/user/new", {"user_id": user_id, "team_id": team_id, "models": ["echo"]})
    assert made["teams"] == [team_id] and made["team_id"] == team_id
    key = (await api.ok("GET", "/key/info", key=made["key"]))["info"]
    assert key["team_id"] == team_id and key["user_id"] == user_id
    team = (await api.ok("GET", "/team/info", team_id=team_id))["team_info"]
    assert {"role": "user", "user_id": user_id, "user_email": None} in team["members_with_roles"]
    status, _ = await api.chat(made["key"])
    assert status == 200
    status, body = await api.post("/user/new", {"team_id": "no-such-team"})
    error(status, body, 400, text="Team not found, passed team_id=no-such-team")

# --- /user/info --------------------------------------------------------------------------------------------

async def test_user_info_for_admins_and_for_the_user_itself(api: Api) -> None:
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id, "team_alias": "zeta"})
    user_id = unique("u")
    made = await api.ok("POST", "/user/new", {"user_id": user_id, "teams": [team_id]})
    info = await api.ok("GET", "/user/info", user_id=user_id)
    assert set(info) == {"user_id", "user_info", "keys", "teams"}
    assert info["user_id"] == user_id and info["user_info"]["user_id"] == user_id
    assert [k["key_name"] for k in info["keys"]] == [made["key_name"]]
    assert info["keys"][0]["user_id"] == user_id
    assert [t["team_id"] for t in info["teams"]] == [team_id]
    assert info["teams"][0]["members_with_roles"][0]["role"] == "user"

    status, own = await api.get("/user/info", key=made["key"])
    assert status == 200 and own["user_id"] == user_id, own
    status, own = await api.get("/user/info", key=made["key"], user_id=user_id)
    assert status == 200, own
    other = await api.ok("POST", "/user/new", {"auto_create_key": False})
    status, body = await api.get("/user/info", key=made["key"], user_id=other["user_id"])
    error(status, body, 403)
    status, body = await api.get("/user/info", key=made["key"], user_id="nobody-at-all")
    error(status, body, 403)  # a non-admin learns nothing about who exists


async def test_user_info_errors(api: Api) -> None:
    status, body = await api.get("/user/info", user_id="nobody-at-all")
    error(status, body, 404, "not_found_error", "User nobody-at-all not found")
    status, body = await api.get("/user/info")
    error(status, body, 400)  # the master key is no user
    status, body = await api.get("/user/info", key=await api.new_key())
    error(status, body, 400)  # a key without a user
    status, body = await api.get("/user/info", key="sk-not-a-real-key")
    error(status, body, 401)


# --- /user/update ------------------------------------------------------------------------------------------

async def test_user_update(api: Api) -> None:
    user_id = unique("u")
    made = await api.ok("POST", "/user/new", {"user_id": user_id, "user_email": f"{user_id}@x.io"})
    status, body = await api.get("/user/list", key=made["key"])
    error(status, body, 403)
    updated = await api.ok("POST", "/user/update", {"user_id": user_id, "max_budget": 3.5, "budget_duration": "1h",
                                                    "user_role": "proxy_admin", "user_alias": "B"})
    assert set(updated) == {"user_id", "data"} and updated["user_id"] == user_id
    data = updated["data"]
    assert (data["max_budget"], data["user_role"], data["user_alias"]) == (3.5, "proxy_admin", "B")
    assert data["budget_reset_at"] is not None
    assert data["user_email"] == f"{user_id}@x.io"  # fields not sent are kept
    status, body = await api.get("/user/list", key=made["key"])
    assert status == 200, body  # the new role holds at once for the user's keys
    by_email = await api.ok("POST", "/user/update", {"user_email": f"{user_id}@x.io", "models": ["echo"]})
    assert by_email["user_id"] == user_id and by_email["data"]["models"] == ["echo"]
    # As in LiteLLM, null is the same as not sending the field: a pydantic client sends null for all it leaves out.
    kept = await api.ok("POST", "/user/update", {"user_id": user_id, "max_budget": None, "budget_duration": None,
                                                 "user_alias": None, "models": None, "metadata": None})
    assert (kept["data"]["max_budget"], kept["data"]["user_alias"], kept["data"]["models"]) == (3.5, "B", ["echo"])
    assert kept["data"]["budget_reset_at"] is not None


async def test_team_and_user_bodies_as_litellm_clients_send_them(api: Api) -> None:
    """nulls for what is not set (in team members too) and numbers as strings, as LiteLLM accepts them."""
    team = await api.ok("POST", "/team/new", {
        "team_alias": f"nulls-{uuid.uuid4().hex[:8]}", "models": None, "max_budget": "5", "tpm_limit": None,
        "metadata": None, "members_with_roles": [{"role": "user", "user_id": "null-member", "user_email": None}]})
    assert (team["max_budget"], team["models"], team["metadata"]) == (5.0, [], {})
    assert [m["user_id"] for m in team["members_with_roles"]] == ["null-member"]
    user = await api.ok("POST", "/user/new", {"user_id": f"nulls-{uuid.uuid4().hex[:8]}", "max_budget": None,
                                              "models": None, "teams": None, "user_role": None, "rpm_limit": "3"})
    assert (user["rpm_limit"], user["max_budget"], user["user_role"]) == (3, None, "internal_user")

    # LiteLLM's fields the gateway does not act on are kept and shown back; spend is a column, and set.
    kept_team = await api.ok("POST", "/team/new", {"team_alias": f"kept-{uuid.uuid4().hex[:8]}",
                                                   "guardrails": ["pii"], "team_member_budget": 5, "tags": ["a"]})
    assert (kept_team["guardrails"], kept_team["team_member_budget"], kept_team["tags"]) == (["pii"], 5, ["a"])
    changed = await api.ok("POST", "/team/update", {"team_id": kept_team["team_id"], "tags": ["b"], "tpm_limit": 9})
    assert (changed["data"]["tags"], changed["data"]["guardrails"], changed["data"]["tpm_limit"]) == (["b"], ["pii"], 9)
    kept_user = await api.ok("POST", "/user/update", {"user_id": user["user_id"], "aliases": {"a": "b"},
                                                      "spend": "2.5", "auto_create_key": False})
    assert (kept_user["data"]["aliases"], kept_user["data"]["spend"]) == ({"a": "b"}, 2.5)
    info = await api.ok("GET", "/user/info", user_id=user["user_id"])
    assert info["user_info"]["aliases"] == {"a": "b"} and "extra" not in info["user_info"]


async def test_team_models_members_and_the_paged_list_as_litellms_tools_call_them(api: Api) -> None:
    team = await api.ok("POST", "/team/new", {"team_alias": f"tools-{uuid.uuid4().hex[:8]}", "models": ["echo"]})
    team_id = team["team_id"]
    added = await api.ok("POST", "/team/model/add", {"team_id": team_id, "models": ["other", "echo"]})
    assert added["models"] == ["echo", "other"]
    removed = await api.ok("POST", "/team/model/delete", {"team_id": team_id, "models": ["echo"]})
    assert removed["models"] == ["other"]
    member = f"member-{uuid.uuid4().hex[:8]}"
    await api.ok("POST", "/team/member_add", {"team_id": team_id, "member": {"user_id": member, "role": "user"}})
    updated = await api.ok("POST", "/team/member_update", {"team_id": team_id, "user_id": member, "role": "admin"})
    assert (updated["user_id"], updated["role"]) == (member, "admin")
    info = await api.ok("GET", "/team/info", team_id=team_id)
    assert [(m["user_id"], m["role"]) for m in info["team_info"]["members_with_roles"]] == [(member, "admin")]
    status, body = await api.post("/team/member_update", {"team_id": team_id, "user_id": "nobody-here"})
    assert status == 404 and body["error"]["param"] == "user_id"
    status, body = await api.post("/team/model/add", {"team_id": "no-such-team", "models": ["echo"]})
    assert status == 404
    paged = await api.ok("GET", "/v2/team/list", page="1", page_size="1")
    assert len(paged["teams"]) == 1 and paged["total"] >= 1 and paged["total_pages"] == paged["total"]


async def test_user_update_by_the_admin_makes_a_missing_user(api: Api) -> None:
    """As LiteLLM's proxy admin may: by user_id, or by an email no user has (a new id is made)."""
    ghost = unique("ghost")
    made = await api.ok("POST", "/user/update", {"user_id": ghost, "max_budget": 1, "spend": 0})
    assert made["user_id"] == ghost and made["data"]["max_budget"] == 1
    info = await api.ok("GET", "/user/info", user_id=ghost)
    assert info["user_info"]["max_budget"] == 1 and info["keys"] == []  # no key made along
    email = f"{unique('ghost')}@x.io"
    by_email = await api.ok("POST", "/user/update", {"user_email": email, "max_budget": 2})
    assert by_email["user_id"] != email and by_email["data"]["user_email"] == email
    again = await api.ok("POST", "/user/update", {"user_email": email, "max_budget": 3})
    assert again["user_id"] == by_email["user_id"] and again["data"]["max_budget"] == 3
    status, body = await api.post("/user/update", {"user_id": unique("ghost"), "teams": ["no-such-team"]})
    error(status, body, 400, text="Team not found")


async def test_user_update_errors(api: Api) -> None:
    status, body = await api.post("/user/update", {"max_budget": 1})
    error(status, body, 400, text="Either user_id or user_email must be provided")
    user_id = unique("u")
    await api.ok("POST", "/user/new", {"user_id": user_id, "auto_create_key": False})
    status, body = await api.post("/user/update", {"user_id": user_id, "user_role": "root"})
    error(status, body, 400, text="user_role must be one of")
    status, body = await api.post("/user/update", {"user_id": user_id, "teams": ["no-such-team"]})
    error(status, body, 400, text="Team not found")
    taken = unique("taken")
    await api.ok("POST", "/user/new", {"user_email": f"{taken}@x.io", "auto_create_key": False})
    status, body = await api.post("/user/update", {"user_id": user_id, "user_email": f"{taken}@x.io"})
    error(status, body, 409)


async def test_user_update_teams_moves_memberships(api: Api) -> None:
    first, second = unique("t"), unique("t")
    for team_id in (first, second):
        await api.ok("POST", "/team/new", {"team_id": team_id})
    user_id = unique("u")
    await api.ok("POST", "/user/new", {"user_id": user_id, "teams": [first], "auto_create_key": False})
    await api.ok("POST", "/user/update", {"user_id": user_id, "teams": [second]})
    members = {t: [m["user_id"] for m in (await api.ok("GET", "/team/info", team_id=t))["team_info"]
                   ["members_with_roles"]] for t in (first, second)}
    assert members == {first: [], second: [user_id]}


# --- /user/delete ------------------------------------------------------------------------------------------

async def test_user_delete_removes_keys_and_memberships(api: Api) -> None:
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id})
    user_id, other_id, kept_id = unique("u"), unique("u"), unique("u")
    made = await api.ok("POST", "/user/new", {"user_id": user_id, "teams": [team_id]})
    await api.ok("POST", "/user/new", {"user_id": other_id, "teams": [team_id], "auto_create_key": False})
    await api.ok("POST", "/user/new", {"user_id": kept_id, "teams": [team_id], "auto_create_key": False})
    second_key = await api.new_key(user_id=user_id)
    for key in (made["key"], second_key):
        status, body = await api.chat(key)
        assert status == 200, body

    assert await api.ok("POST", "/user/delete", {"user_ids": [user_id, other_id]}) == 2
    for key in (made["key"], second_key):
        status, body = await api.chat(key)
        error(status, body, 401)
    status, body = await api.get("/user/info", user_id=user_id)
    error(status, body, 404)
    team = (await api.ok("GET", "/team/info", team_id=team_id))["team_info"]
    assert [m["user_id"] for m in team["members_with_roles"]] == [kept_id]


async def test_user_delete_checks_every_id_before_deleting(api: Api) -> None:
    user_id = unique("u")
    made = await api.ok("POST", "/user/new", {"user_id": user_id})
    status, body = await api.post("/user/delete", {"user_ids": [user_id, "ghost-user"]})
    error(status, body, 404, "not_found_error", "User not found, passed user_id=ghost-user")
    await api.ok("GET", "/user/info", user_id=user_id)
    status, answer = await api.chat(made["key"])
    assert status == 200, answer
    assert await api.ok("POST", "/user/delete", {"user_ids": [user_id, user_id]}) == 1


# --- /user/list --------------------------------------------------------------------------------------------

async def test_user_list_pages_and_filters(api: Api) -> None:
    ids = [unique("viewer") for _ in range(3)]
    for user_id in ids:
        await api.ok("POST", "/user/new", {"user_id": user_id, "user_role": "internal_user_viewer"})
    listed = await api.ok("GET", "/user/list", role="internal_user_viewer", page_size="2")
    assert set(listed) == {"users", "total", "page", "page_size", "total_pages"}
    assert listed["total"] >= 3 and listed["page"] == 1 and listed["page_size"] == 2
    assert listed["total_pages"] == -(-listed["total"] // 2) and len(listed["users"]) == 2
    assert all(u["user_role"] == "internal_user_viewer" for u in listed["users"])
    second = await api.ok("GET", "/user/list", role="internal_user_viewer", page_size="2", page="2")
    assert not {u["user_id"] for u in second["users"]} & {u["user_id"] for u in listed["users"]}
    chosen = await api.ok("GET", "/user/list", user_ids=",".join(ids[:2]))
    assert sorted(u["user_id"] for u in chosen["users"]) == sorted(ids[:2]) and chosen["total"] == 2
    assert all(u["key_count"] == 1 for u in chosen["users"])
    empty = await api.ok("GET", "/user/list", page="1000")
    assert empty["users"] == [] and empty["page"] == 1000


@pytest.mark.parametrize("params", [{"page": "0"}, {"page": "x"}, {"page_size": "0"}, {"page_size": "101"},
                                    {"page": "99999999999999999999999"}, {"role": "god"}])
async def test_user_list_bad_query_is_400(api: Api, params: dict[str, str]) -> None:
    status, body = await api.get("/user/list", **params)
    error(status, body, 400)


# --- /team/new and /team/info ------------------------------------------------------------------------------

async def test_team_new_and_info(api: Api) -> None:
    team_id = unique("t")
    known = unique("u")
    await api.ok("POST", "/user/new", {"user_id": known, "auto_create_key": False})
    fresh = unique("u")
    made = await api.ok("POST", "/team/new", {
        "team_id": team_id, "team_alias": "Blue", "models": ["echo"], "max_budget": 20, "budget_duration": "7d",
        "tpm_limit": 1000, "rpm_limit": 10, "max_parallel_requests": 2, "metadata": {"owner": "ops"},
        "members_with_roles": [{"role": "admin", "user_id": known}, {"user_id": fresh, "user_email": "f@x.io"}]})
    assert made["team_id"] == team_id and made["team_alias"] == "Blue" and made["models"] == ["echo"]
    assert (made["max_budget"], made["tpm_limit"], made["rpm_limit"], made["max_parallel_requests"]) == \
        (20, 1000, 10, 2)
    assert made["budget_reset_at"] is not None and made["blocked"] is False and made["from_config"] is False
    assert made["members_with_roles"] == [{"role": "admin", "user_id": known, "user_email": None},
                                          {"role": "user", "user_id": fresh, "user_email": "f@x.io"}]
    for user_id in (known, fresh):  # the member missing a user row got one
        assert (await api.ok("GET", "/user/info", user_id=user_id))["user_info"]["teams"] == [team_id]

    key = await api.new_key(team_id=team_id)
    info = await api.ok("GET", "/team/info", team_id=team_id)
    assert set(info) == {"team_id", "team_info", "keys", "team_memberships"}
    assert info["team_info"] == made | {"updated_at": info["team_info"]["updated_at"]}
    assert [k["key_name"] for k in info["keys"]] == [f"sk-...{key[-4:]}"] and info["team_memberships"] == []


async def test_team_new_generates_an_id_and_refuses_duplicates(api: Api) -> None:
    made = await api.ok("POST", "/team/new", {})
    assert len(made["team_id"]) == 32 and int(made["team_id"], 16) >= 0
    assert made["members_with_roles"] == [] and made["models"] == []
    status, body = await api.post("/team/new", {"team_id": made["team_id"]})
    message = error(status, body, 400)["message"]
    assert message == f"Team id = {made['team_id']} already exists. Please use a different team id."
    status, body = await api.post("/team/new", {"team_id": "cfg-team"})
    error(status, body, 400, text="already exists")
    status, body = await api.post("/team/new", {"members_with_roles": [{"user_id": "a"}, {"user_id": "a"}]})
    error(status, body, 400, text="more than once")


async def test_team_new_by_a_proxy_admin_key_makes_it_team_admin(api: Api) -> None:
    admin_id = unique("admin")
    made = await api.ok("POST", "/user/new", {"user_id": admin_id, "user_role": "proxy_admin"})
    status, team = await api.post("/team/new", {"team_alias": "theirs"}, key=made["key"])
    assert status == 200, team
    assert team["members_with_roles"] == [{"role": "admin", "user_id": admin_id, "user_email": None}]


async def test_the_master_key_makes_the_proxy_admin_user_a_member_of_its_teams(http: aiohttp.ClientSession) -> None:
    """LiteLLM takes the master key's caller to be user `default_user_id`, so a team it makes has that user
    as an admin (and the user row exists), unless general_settings.disable_auto_add_proxy_admin_to_teams."""
    config = copy.deepcopy(CONFIG)
    del config["general_settings"]["disable_auto_add_proxy_admin_to_teams"]
    with Gateway(config, env={"DATABASE_URL": "", "LITELLM_MASTER_KEY": ""}) as gw:
        api = Api(http, gw.url)
        made = await api.ok("POST", "/team/new", {"team_alias": "mine", "members_with_roles": [{"user_id": "u1"}]})
        assert made["members_with_roles"] == [{"role": "user", "user_id": "u1", "user_email": None},
                                              {"role": "admin", "user_id": "default_user_id", "user_email": None}]
        admin_user = (await api.ok("GET", "/user/info", user_id="default_user_id"))["user_info"]
        assert admin_user["teams"] == [made["team_id"]]
        named = await api.ok("POST", "/team/new",
                             {"members_with_roles": [{"role": "user", "user_id": "default_user_id"}]})
        assert named["members_with_roles"] == [{"role": "user", "user_id": "default_user_id", "user_email": None}]
        user_id = unique("admin")
        key = (await api.ok("POST", "/user/new", {"user_id": user_id, "user_role": "proxy_admin"}))["key"]
        status, theirs = await api.post("/team/new", {}, key=key)
        assert status == 200 and theirs["members_with_roles"] == [
            {"role": "admin", "user_id": user_id, "user_email": None}]


async def test_team_info_errors_and_own_team(api: Api) -> None:
    status, body = await api.get("/team/info", team_id="no-such-team")
    error(status, body, 404, "not_found_error", "Team not found, passed team_id=no-such-team")
    status, body = await api.get("/team/info")
    error(status, body, 400, text="No team id passed in")
    team_id, other = unique("t"), unique("t")
    for t in (team_id, other):
        await api.ok("POST", "/team/new", {"team_id": t})
    key = await api.new_key(team_id=team_id)
    for params in ({"team_id": team_id}, {}):
        status, body = await api.get("/team/info", key=key, **params)
        assert status == 200 and body["team_id"] == team_id, body
    status, body = await api.get("/team/info", key=key, team_id=other)
    error(status, body, 403)
    status, body = await api.get("/team/info", key=await api.new_key(), team_id=team_id)
    error(status, body, 403)


async def test_config_team_is_listed_and_shown(api: Api) -> None:
    info = await api.ok("GET", "/team/info", team_id="cfg-team")
    assert info["team_info"]["max_budget"] == 5 and info["team_info"]["models"] == ["echo"]
    assert info["team_info"]["from_config"] is True
    listed = await api.ok("GET", "/team/list")
    assert isinstance(listed, list)
    assert [t["from_config"] for t in listed if t["team_id"] == "cfg-team"] == [True]
    key = await api.new_key(team_id="cfg-team")
    status, body = await api.chat(key)
    assert status == 200, body
    status, body = await api.chat(key, "other")
    error(status, body, 401, "team_model_access_denied")


# --- /team/update, /team/list ------------------------------------------------------------------------------

async def test_team_update(api: Api) -> None:
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id, "team_alias": "old", "models": ["echo"]})
    updated = await api.ok("POST", "/team/update", {"team_id": team_id, "team_alias": "new", "max_budget": 9,
                                                    "budget_duration": "1d"})
    assert set(updated) == {"team_id", "data"} and updated["team_id"] == team_id
    data = updated["data"]
    assert (data["team_alias"], data["max_budget"], data["models"]) == ("new", 9, ["echo"])
    assert data["budget_reset_at"] is not None
    status, body = await api.post("/team/update", {"team_id": "no-such-team", "max_budget": 1})
    error(status, body, 404, "not_found_error", "Team not found, passed team_id=no-such-team")
    status, body = await api.get("/team/info", team_id="no-such-team")
    error(status, body, 404)  # no upsert


async def test_team_list(api: Api) -> None:
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id, "team_alias": "aaa-first"})
    listed = await api.ok("GET", "/team/list")
    assert team_id in [t["team_id"] for t in listed]
    assert all("members_with_roles" in t and "from_config" in t for t in listed)
    user_id = unique("u")
    await api.ok("POST", "/user/new", {"user_id": user_id, "teams": [team_id], "auto_create_key": False})
    mine = await api.ok("GET", "/team/list", user_id=user_id)
    assert [t["team_id"] for t in mine] == [team_id]
    assert await api.ok("GET", "/team/list", user_id="nobody-at-all") == []


# --- /team/delete ------------------------------------------------------------------------------------------

async def test_team_delete_removes_its_keys_and_memberships(api: Api) -> None:
    team_id = unique("t")
    user_id = unique("u")
    await api.ok("POST", "/team/new", {"team_id": team_id, "members_with_roles": [{"user_id": user_id}]})
    key = await api.new_key(team_id=team_id)
    status, body = await api.chat(key)
    assert status == 200, body
    assert await api.ok("POST", "/team/delete", {"team_ids": [team_id]}) == {"deleted_teams": [team_id]}
    status, body = await api.chat(key)
    error(status, body, 401)
    status, body = await api.get("/team/info", team_id=team_id)
    error(status, body, 404)
    assert (await api.ok("GET", "/user/info", user_id=user_id))["user_info"]["teams"] == []


async def test_team_delete_checks_every_id_before_deleting(api: Api) -> None:
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id})
    status, body = await api.post("/team/delete", {"team_ids": [team_id, "no-such-team"]})
    error(status, body, 404, "not_found_error", "Team not found, passed team_id=no-such-team")
    await api.ok("GET", "/team/info", team_id=team_id)


# --- /team/member_add, /team/member_delete -----------------------------------------------------------------

async def test_member_add(api: Api) -> None:
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id})
    known = unique("u")
    await api.ok("POST", "/user/new", {"user_id": known, "user_email": f"{known}@x.io", "auto_create_key": False})
    added = await api.ok("POST", "/team/member_add", {"team_id": team_id,
                                                      "member": {"role": "admin", "user_id": known}})
    assert added["team_id"] == team_id
    assert added["members_with_roles"] == [{"role": "admin", "user_id": known, "user_email": f"{known}@x.io"}]
    assert [u["user_id"] for u in added["updated_users"]] == [known]
    assert added["updated_users"][0]["teams"] == [team_id]

    fresh = unique("u")
    email = f"{unique('e')}@x.io"
    added = await api.ok("POST", "/team/member_add", {"team_id": team_id, "member": [
        {"user_id": fresh}, {"user_email": email}]})
    assert [m["user_id"] for m in added["members_with_roles"]][:2] == [known, fresh]
    made_by_email = added["updated_users"][1]
    assert made_by_email["user_email"] == email and len(made_by_email["user_id"]) == 32
    assert added["members_with_roles"][2] == {"role": "user", "user_id": made_by_email["user_id"],
                                              "user_email": email}
    assert (await api.ok("GET", "/user/info", user_id=fresh))["user_info"]["teams"] == [team_id]

    for member in ({"user_id": known}, {"user_email": email}, [{"user_id": unique("u")}, {"user_id": fresh}]):
        status, body = await api.post("/team/member_add", {"team_id": team_id, "member": member})
        error(status, body, 400, "team_member_already_in_team", "already in team")
    assert len((await api.ok("GET", "/team/info", team_id=team_id))["team_info"]["members_with_roles"]) == 3


async def test_member_add_errors(api: Api) -> None:
    status, body = await api.post("/team/member_add", {"team_id": "no-such-team", "member": {"user_id": "a"}})
    error(status, body, 404, "not_found_error", "Team not found for team_id=no-such-team")
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id})
    status, body = await api.post("/team/member_add", {"team_id": team_id, "member": []})
    error(status, body, 400, text="No member/members passed in")
    status, body = await api.post("/team/member_add", {"team_id": team_id, "member": {"role": "user"}})
    error(status, body, 400, text="user_id or a user_email")


async def test_member_delete(api: Api) -> None:
    team_id = unique("t")
    one, two = unique("u"), unique("u")
    await api.ok("POST", "/team/new", {"team_id": team_id, "members_with_roles": [
        {"user_id": one}, {"user_id": two, "user_email": f"{two}@x.io"}]})
    left = await api.ok("POST", "/team/member_delete", {"team_id": team_id, "user_id": one})
    assert [m["user_id"] for m in left["members_with_roles"]] == [two]
    assert (await api.ok("GET", "/user/info", user_id=one))["user_info"]["teams"] == []
    left = await api.ok("POST", "/team/member_delete", {"team_id": team_id, "user_email": f"{two}@x.io"})
    assert left["members_with_roles"] == [] and left["team_id"] == team_id
    assert (await api.ok("GET", "/user/info", user_id=two))["user_info"]["teams"] == []

    status, body = await api.post("/team/member_delete", {"team_id": team_id, "user_id": one})
    error(status, body, 400, text="User not found in team")
    status, body = await api.post("/team/member_delete", {"team_id": team_id})
    error(status, body, 400, text="Either user_id or user_email needs to be passed in")
    status, body = await api.post("/team/member_delete", {"team_id": "no-such-team", "user_id": one})
    error(status, body, 404, "not_found_error")


# --- /team/block, /team/unblock and what a team does to its keys -------------------------------------------

async def test_blocked_team_locks_out_its_keys(api: Api) -> None:
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id})
    key = await api.new_key(team_id=team_id)
    status, body = await api.chat(key)
    assert status == 200, body
    blocked = await api.ok("POST", "/team/block", {"team_id": team_id})
    assert blocked["blocked"] is True and blocked["team_id"] == team_id
    status, body = await api.chat(key)
    error(status, body, 401, text=f"Team={team_id} is blocked")
    unblocked = await api.ok("POST", "/team/unblock", {"team_id": team_id})
    assert unblocked["blocked"] is False
    status, body = await api.chat(key)
    assert status == 200, body
    for path in ("/team/block", "/team/unblock"):
        status, body = await api.post(path, {"team_id": "no-such-team"})
        error(status, body, 404, "not_found_error")


async def test_team_models_bound_its_keys(api: Api) -> None:
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id, "models": ["echo"]})
    key = await api.new_key(team_id=team_id)
    status, body = await api.chat(key)
    assert status == 200, body
    status, body = await api.chat(key, "other")
    error(status, body, 401, "team_model_access_denied", "team not allowed to access model")


async def test_all_team_models_follows_the_team(api: Api) -> None:
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id, "models": ["echo"]})
    key = await api.new_key(team_id=team_id, models=["all-team-models"])
    status, body = await api.chat(key)
    assert status == 200, body
    status, body = await api.chat(key, "other")
    error(status, body, 401, text="not allowed to access model")
    await api.ok("POST", "/team/update", {"team_id": team_id, "models": ["other"]})
    status, body = await api.chat(key, "other")
    assert status == 200, body
    status, body = await api.chat(key)
    error(status, body, 401, text="not allowed to access model")



async def test_a_teams_model_aliases_rename_what_its_keys_ask_for(api: Api) -> None:
    """LiteLLM's team `model_aliases`: a team key asking for the alias gets the model it names, judged by it."""
    team_id = unique("t")
    await api.ok("POST", "/team/new", {"team_id": team_id, "model_aliases": {"cheap": "echo", "pricey": "other"}})
    key = await api.new_key(team_id=team_id, models=["echo"])
    async with api.http.post(f"{api.url}/v1/chat/completions", json={"model": "cheap", "messages": HELLO},
                             headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status == 200 and r.headers["x-litellm-model-group"] == "echo", await r.text()
    status, body = await api.chat(key, "pricey")  # names a model this key may not use
    error(status, body, 401, text="not allowed to access model")
    status, body = await api.chat(await api.new_key(models=["echo"]), "cheap")  # no team, no alias
    error(status, body, 401, text="not allowed to access model")

# --- who may call what -------------------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("POST", "/user/new", {}), ("POST", "/user/update", {"user_id": "x"}),
    ("POST", "/user/delete", {"user_ids": ["x"]}),
    ("GET", "/user/list", None), ("POST", "/team/new", {}), ("POST", "/team/update", {"team_id": "cfg-team"}),
    ("POST", "/team/delete", {"team_ids": ["cfg-team"]}), ("GET", "/team/list", None),
    ("POST", "/team/member_add", {"team_id": "cfg-team", "member": {"user_id": "x"}}),
    ("POST", "/team/member_delete", {"team_id": "cfg-team", "user_id": "x"}),
    ("POST", "/team/block", {"team_id": "cfg-team"}), ("POST", "/team/unblock", {"team_id": "cfg-team"}),
]


@pytest.mark.parametrize(("method", "path", "payload"), ADMIN_ROUTES, ids=[p for _, p, _ in ADMIN_ROUTES])
async def test_non_admin_keys_get_403(api: Api, method: str, path: str, payload: Any) -> None:
    for key in (await api.new_key(), await api.new_key(team_id="cfg-team")):
        status, body = await api.call(method, path, payload, key=key)
        error(status, body, 403, "auth_error", "Only proxy admin")
    status, body = await api.call(method, path, payload, key="")
    error(status, body, 401)
    assert (await api.ok("GET", "/team/info", team_id="cfg-team"))["team_info"]["blocked"] is False


# --- bad input: always 400, never 500 ----------------------------------------------------------------------

HUGE = "x" * 300
BAD_INPUT = [
    ("/user/new", {"user_id": 5}), ("/user/new", {"unknown_field": 1}), ("/user/new", {"user_id": HUGE}),
    ("/user/new", {"user_email": HUGE}), ("/user/new", {"max_budget": -1}), ("/user/new", {"max_budget": 1e30}),
    ("/user/new", {"tpm_limit": 10**30}), ("/user/new", {"rpm_limit": -1}),
    ("/user/new", {"max_parallel_requests": 1.5}),
    ("/user/new", {"budget_duration": "forever"}), ("/user/new", {"duration": "-1"}), ("/user/new", {"models": "echo"}),
    ("/user/new", {"teams": [HUGE]}), ("/user/new", {"metadata": []}), ("/user/new", {"auto_create_key": "yes"}),
    ("/user/new", {"user_role": "owner"}), ("/user/new", {"key_alias": HUGE}), ("/user/new", []), ("/user/new", "x"),
    ("/user/new", {"metadata": {"blob": "x" * 70000}}),
    ("/user/update", {"user_id": 1}), ("/user/update", {"user_id": "u", "max_budget": 10**30}),
    ("/user/update", {"user_id": "u", "bogus": True}), ("/user/update", {"user_id": HUGE}),
    ("/user/update", {"user_id": "u", "tpm_limit": -5}), ("/user/update", {"user_id": "u", "budget_duration": "1y"}),
    ("/user/delete", {}), ("/user/delete", {"user_ids": "u"}), ("/user/delete", {"user_ids": []}),
    ("/user/delete", {"user_ids": [HUGE]}), ("/user/delete", {"user_ids": [1]}),
    ("/user/delete", {"user_ids": ["u"], "x": 1}),
    ("/team/new", {"team_id": 1}), ("/team/new", {"team_id": HUGE}), ("/team/new", {"team_alias": HUGE}),
    ("/team/new", {"max_budget": -5}), ("/team/new", {"max_budget": "five"}), ("/team/new", {"tpm_limit": 10**30}),
    ("/team/new", {"rpm_limit": 1e30}), ("/team/new", {"models": [1]}), ("/team/new", {"blocked": "no"}),
    ("/team/new", {"budget_duration": "soon"}), ("/team/new", {"nope": 1}), ("/team/new", {"metadata": "m"}),
    ("/team/new", {"members_with_roles": [{"role": "owner", "user_id": "a"}]}),
    ("/team/new", {"members_with_roles": [{}]}), ("/team/new", {"members_with_roles": [{"user_id": "a", "x": 1}]}),
    ("/team/new", {"members_with_roles": {"user_id": "a"}}),
    ("/team/update", {}), ("/team/update", {"team_id": "t", "max_parallel_requests": 10**30}),
    ("/team/update", {"team_id": "t", "members_with_roles": []}), ("/team/update", {"team_id": "t", "max_budget": -1}),
    ("/team/update", {"team_id": None}),
    ("/team/delete", {}), ("/team/delete", {"team_ids": "t"}), ("/team/delete", {"team_ids": []}),
    ("/team/delete", {"team_ids": [HUGE]}),
    ("/team/member_add", {}), ("/team/member_add", {"team_id": "t"}),
    ("/team/member_add", {"team_id": "t", "member": "u"}),
    ("/team/member_add", {"team_id": "t", "member": {"user_id": 1}}),
    ("/team/member_add", {"team_id": "t", "member": {"role": "x", "user_id": "a"}}),
    ("/team/member_add", {"team_id": "t", "member": {"user_id": HUGE}}),
    ("/team/member_add", {"team_id": "t", "member": {"user_id": "a"}, "max_budget_in_team": -1}),
    ("/team/member_delete", {"team_id": "t"}), ("/team/member_delete", {"team_id": "t", "user_id": 7}),
    ("/team/member_delete", {"user_id": "a"}), ("/team/member_delete", {"team_id": "t", "user_email": HUGE}),
    ("/team/block", {}), ("/team/block", {"team_id": None}), ("/team/block", {"team_id": HUGE}),
    ("/team/block", {"team_id": "t", "extra": 1}), ("/team/unblock", {"team_id": ["a"]}), ("/team/unblock", []),
]


@pytest.mark.parametrize(("path", "payload"), BAD_INPUT, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD_INPUT)])
async def test_bad_input_is_400(api: Api, path: str, payload: Any) -> None:
    status, body = await api.post(path, payload)
    error(status, body, 400)


@pytest.mark.parametrize("path", sorted({p for p, _ in BAD_INPUT}))
async def test_malformed_json_is_400(api: Api, path: str) -> None:
    status, body = await api.call("POST", path, data=b'{not json')
    error(status, body, 400, text="Invalid JSON payload")


async def test_bad_queries_are_400(api: Api) -> None:
    status, body = await api.get("/team/info", team_id="")
    error(status, body, 400)
    status, body = await api.get("/user/info", user_id=HUGE)
    error(status, body, 404)


# --- several processes starting on one fresh store ---------------------------------------------------------

CONFIG_TEAMS = [{"team_id": f"start-{i}", "team_alias": f"Start {i}", "max_budget": i + 1} for i in range(3)]


async def test_instances_starting_together_each_write_the_config_teams(database_url: str, tmp_path: Path) -> None:
    """Every instance reads, misses and inserts the config's teams at start; the loser of that race must
    take the winner's row rather than die on the unique id."""
    config = parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
                           "teams": CONFIG_TEAMS})
    stores = [Store(await open_database(database_url, str(tmp_path / "unused.db"))) for _ in range(4)]
    for store in stores:
        await store.start()
    try:
        await asyncio.gather(*(sync_config_teams(config, store) for store in stores))
        teams, total = await stores[0].find(TEAMS, {})
        assert total == 3
        assert {(t.team_id, t.max_budget, t.from_config) for t in teams} == {
            ("start-0", 1, True), ("start-1", 2, True), ("start-2", 3, True)}
    finally:
        for store in stores:
            await store.close()


def test_workers_on_a_fresh_file_all_start_and_list_each_team_once() -> None:
    config = copy.deepcopy(CONFIG)
    config["teams"] = CONFIG_TEAMS
    for attempt in range(3):  # a new file each time: the race is at the very first start
        gw = Gateway(config, "--workers", "4", env={"DATABASE_URL": "", "LITELLM_MASTER_KEY": ""})
        try:
            gw.start()
            request = urllib.request.Request(f"{gw.url}/team/list", headers={"Authorization": f"Bearer {MASTER}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                listed = json.loads(response.read())
            assert sorted(t["team_id"] for t in listed if t["team_id"].startswith("start-")) == [
                "start-0", "start-1", "start-2"], attempt
        finally:
            assert gw.stop() == 0, gw.log()
