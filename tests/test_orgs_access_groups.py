"""/organization/*, model access groups (config and API) and /policies/list over real HTTP against a real
gateway, once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.harness import Gateway
from tests.test_users_teams import HELLO, Api, _drop_schema, error, unique

MASTER = "sk-master-users-teams"  # the one tests.test_users_teams.Api sends by default
PRICE = 0.001
CONFIG: dict[str, Any] = {
    "model_list": [
        {"model_name": "echo", "litellm_params": {"model": "mock/echo"},
         "model_info": {"access_groups": ["my-group"]}},
        {"model_name": "other", "litellm_params": {"model": "mock/other"},
         "model_info": {"access_groups": ["my-group", "beta"]}},
        {"model_name": "third", "litellm_params": {"model": "mock/third"}},
        {"model_name": "priced", "litellm_params": {"model": "mock/priced", "input_cost_per_token": PRICE,
                                                     "output_cost_per_token": PRICE}},
    ],
    "general_settings": {"master_key": MASTER},
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    config = copy.deepcopy(CONFIG)
    base, schema = None, None
    if request.param == "postgres":
        base = str(request.getfixturevalue("postgres_base"))
        schema = f"gw_test_{uuid.uuid4().hex[:12]}"
        config["general_settings"]["database_url"] = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    gw = Gateway(config, env={"DATABASE_URL": "", "LITELLM_MASTER_KEY": ""})
    try:
        yield gw.start()
    finally:
        gw.stop()
        if base is not None and schema is not None:
            _drop_schema(base, schema)
    assert "unhandled error" not in gw.log(), gw.log()
    assert "Traceback" not in gw.log(), gw.log()


@pytest.fixture
async def api(gateway: Gateway, http: aiohttp.ClientSession) -> AsyncIterator[Api]:
    yield Api(http, gateway.url)


async def new_org(api: Api, **fields: Any) -> dict[str, Any]:
    return dict(await api.ok("POST", "/organization/new", {"organization_alias": unique("org"), **fields}))


async def model_ids(api: Api, key: str, **params: str) -> list[str]:
    status, body = await api.get("/models", key=key, **params)
    assert status == 200, body
    assert body["object"] == "list"
    return [m["id"] for m in body["data"]]


# --- organizations -------------------------------------------------------------------------------------------

async def test_organization_crud_in_litellm_shapes(api: Api) -> None:
    status, body = await api.post("/organization/new", {"models": ["echo"]})
    error(status, body, 400, text="organization_alias")

    org = await new_org(api, models=["echo", "other"], max_budget=10, budget_duration="30d", tpm_limit=1000,
                        metadata={"cost_center": "7"}, tags=["kept"])
    org_id = org["organization_id"]
    assert org["models"] == ["echo", "other"] and org["spend"] == 0.0
    budget = org["litellm_budget_table"]
    assert budget["max_budget"] == 10 and budget["budget_duration"] == "30d" and budget["tpm_limit"] == 1000
    assert budget["budget_id"] == org["budget_id"] and budget["budget_reset_at"] is not None
    assert "max_budget" not in org and org["tags"] == ["kept"] and org["metadata"] == {"cost_center": "7"}

    status, body = await api.post("/organization/new", {"organization_alias": "x", "organization_id": org_id})
    error(status, body, 400, text="already exists")

    user_key = await api.new_key(models=["echo"])
    status, body = await api.post("/organization/new", {"organization_alias": "nope"}, key=user_key)
    error(status, body, 401, text="Only admins can create orgs")

    updated = await api.ok("PATCH", "/organization/update", {"organization_id": org_id, "models": ["echo"],
                                                             "organization_alias": "renamed"})
    assert updated["models"] == ["echo"] and updated["organization_alias"] == "renamed"
    assert updated["members"] == [] and updated["teams"] == []
    status, body = await api.call("PATCH", "/organization/update", {"organization_id": "missing"})
    error(status, body, 404, text="missing")
    status, body = await api.call("POST", "/organization/update", {"organization_id": org_id})
    error(status, body, 405)

    user_id = unique("u")
    added = await api.ok("POST", "/organization/member_add", {
        "organization_id": org_id, "member": [{"role": "org_admin", "user_id": user_id},
                                              {"role": "internal_user", "user_email": f"{user_id}@x.io"}]})
    assert added["organization_id"] == org_id
    assert [u["user_id"] for u in added["updated_users"]][0] == user_id
    memberships = added["updated_organization_memberships"]
    assert [m["user_role"] for m in memberships] == ["org_admin", "internal_user"]
    assert all(m["organization_id"] == org_id for m in memberships)
    status, body = await api.post("/organization/member_add", {"organization_id": org_id,
                                                               "member": {"role": "org_admin", "user_id": user_id}})
    error(status, body, 400, text="already a member")
    status, body = await api.post("/organization/member_add", {"organization_id": org_id,
                                                               "member": {"role": "admin", "user_id": "x"}})
    error(status, body, 400)
    status, body = await api.post("/organization/member_add", {"organization_id": "missing",
                                                               "member": {"role": "org_admin", "user_id": "x"}})
    error(status, body, 404)

    member = await api.ok("PATCH", "/organization/member_update", {
        "organization_id": org_id, "user_id": user_id, "role": "internal_user_viewer",
        "max_budget_in_organization": 5})
    assert member["user_role"] == "internal_user_viewer" and member["litellm_budget_table"]["max_budget"] == 5
    status, body = await api.call("PATCH", "/organization/member_update", {"organization_id": org_id,
                                                                          "user_id": "nobody"})
    error(status, body, 404)
    status, body = await api.call("PATCH", "/organization/member_update", {"organization_id": "missing",
                                                                          "user_id": user_id})
    error(status, body, 400)

    shown = await api.ok("GET", "/organization/info", organization_id=org_id)
    assert shown["organization_alias"] == "renamed" and len(shown["members"]) == 2
    status, body = await api.get("/organization/info", organization_id="missing")
    error(status, body, 404, text="Organization not found")
    listed = await api.ok("GET", "/organization/list")
    assert org_id in [o["organization_id"] for o in listed]
    many = await api.ok("POST", "/organization/info", {"organizations": [org_id]})
    assert [o["organization_id"] for o in many] == [org_id]

    gone = await api.ok("DELETE", "/organization/member_delete", {"organization_id": org_id, "user_id": user_id})
    assert gone["user_id"] == user_id
    status, body = await api.call("DELETE", "/organization/member_delete", {"organization_id": org_id,
                                                                           "user_id": user_id})
    error(status, body, 404)
    assert len((await api.ok("GET", "/organization/info", organization_id=org_id))["members"]) == 1

    team = await api.ok("POST", "/team/new", {"organization_id": org_id, "models": ["echo"]})
    assert team["organization_id"] == org_id
    key = await api.new_key(team_id=team["team_id"])
    info = await api.ok("GET", "/key/info", key=key)
    assert info["info"]["organization_id"] == org_id
    assert [t["team_id"] for t in (await api.ok("GET", "/organization/info", organization_id=org_id))["teams"]] \
        == [team["team_id"]]

    status, body = await api.call("DELETE", "/organization/delete", {"organization_ids": [org_id, "missing"]})
    error(status, body, 404, text="missing")
    deleted = await api.ok("DELETE", "/organization/delete", {"organization_ids": [org_id]})
    assert [o["organization_id"] for o in deleted] == [org_id]
    status, body = await api.chat(key)
    error(status, body, 401)
    status, body = await api.get("/team/info", team_id=team["team_id"])
    error(status, body, 404)


async def test_team_and_key_organization_checks(api: Api) -> None:
    org = await new_org(api, models=["echo"], max_budget=5)
    org_id = org["organization_id"]
    status, body = await api.post("/team/new", {"organization_id": "missing", "models": ["echo"]})
    error(status, body, 400, text="Organization not found")
    status, body = await api.post("/team/new", {"organization_id": org_id, "models": ["third"]})
    error(status, body, 403, text="This org can only access models=['echo']")
    status, body = await api.post("/team/new", {"organization_id": org_id, "models": ["echo"], "max_budget": 9})
    error(status, body, 403, text="max_budget")
    status, body = await api.post("/key/generate", {"organization_id": "missing"})
    error(status, body, 400, text="Organization not found")


async def test_a_team_in_an_organization_is_refused_a_model_outside_it(api: Api) -> None:
    org = await new_org(api, models=["echo", "other"])
    org_id = org["organization_id"]
    team = await api.ok("POST", "/team/new", {"organization_id": org_id, "models": ["echo", "other"]})
    key = await api.new_key(team_id=team["team_id"])
    assert (await api.chat(key, "echo"))[0] == 200
    status, body = await api.chat(key, "third")
    error(status, body, 401, "team_model_access_denied")

    # The organization narrows what the team itself allows, and a change to it holds at once.
    await api.ok("PATCH", "/organization/update", {"organization_id": org_id, "models": ["other"]})
    status, body = await api.chat(key, "echo")
    error(status, body, 401, "org_model_access_denied",
          "org not allowed to access model. This org can only access models=['other']. Tried to access echo")
    assert (await api.chat(key, "other"))[0] == 200
    assert await model_ids(api, key) == ["other"]

    # A key put straight into the organization is narrowed the same way.
    direct = await api.new_key(organization_id=org_id)
    error(*(await api.chat(direct, "third")), 401, "org_model_access_denied")

    await api.ok("PATCH", "/organization/update", {"organization_id": org_id, "blocked": True})
    error(*(await api.chat(key, "other")), 401, text=f"Organization={org_id} is blocked")
    await api.ok("PATCH", "/organization/update", {"organization_id": org_id, "blocked": False})
    assert (await api.chat(key, "other"))[0] == 200


async def test_organization_budget_refuses_its_keys_once_spent(api: Api) -> None:
    org = await new_org(api, max_budget=0.05)
    org_id = org["organization_id"]
    team = await api.ok("POST", "/team/new", {"organization_id": org_id})
    keys = [await api.new_key(team_id=team["team_id"]), await api.new_key(organization_id=org_id)]
    outsider = await api.new_key()
    answers: list[int] = []
    refusal: dict[str, Any] = {}
    for turn in range(40):
        status, body = await api.call("POST", "/v1/chat/completions", {
            "model": "priced", "messages": HELLO, "max_tokens": 5}, key=keys[turn % 2])
        answers.append(status)
        if status != 200:
            refusal = error(status, body, 429, "budget_exceeded", f"Organization={org_id}")
            break
    assert answers[0] == 200 and answers[-1] == 429, answers
    assert answers.count(200) >= 2  # both keys spent from the one budget before it was refused
    for key in keys:  # spent: every key of the organization is refused, whatever its own budget
        error(*(await api.call("POST", "/v1/chat/completions", {"model": "priced", "messages": HELLO,
                                                                "max_tokens": 5}, key=key)), 429, "budget_exceeded")
    assert refusal
    assert (await api.chat(outsider, "priced"))[0] == 200
    shown = await api.ok("GET", "/organization/info", organization_id=org_id)
    assert shown["spend"] > 0


# --- access groups -------------------------------------------------------------------------------------------

async def test_a_key_with_a_config_access_group_reaches_its_models_only(api: Api) -> None:
    key = await api.new_key(models=["my-group"])
    assert (await api.chat(key, "echo"))[0] == 200
    assert (await api.chat(key, "other"))[0] == 200
    status, body = await api.chat(key, "third")
    error(status, body, 401, "key_model_access_denied", "Tried to access third")
    assert await model_ids(api, key) == ["echo", "other"]
    assert await model_ids(api, key, only_model_access_groups="True") == ["my-group"]
    assert await model_ids(api, key, include_model_access_groups="True") == ["echo", "other", "my-group"]

    narrow = await api.new_key(models=["third"])
    assert await model_ids(api, narrow, only_model_access_groups="True") == []
    assert {"my-group", "beta"} <= set(await model_ids(api, MASTER, only_model_access_groups="True"))

    info = await api.ok("GET", "/model_group/info")
    groups = {g["model_group"]: g["access_groups"] for g in info["data"]}
    assert groups["echo"] == ["my-group"] and groups["other"] == ["beta", "my-group"] and groups["third"] == []

    team = await api.ok("POST", "/team/new", {"models": ["beta"]})
    member = await api.new_key(team_id=team["team_id"])
    assert (await api.chat(member, "other"))[0] == 200
    error(*(await api.chat(member, "echo")), 401, "team_model_access_denied")


async def test_access_groups_made_through_the_api_grant_their_models(api: Api) -> None:
    name = unique("api-group")
    key = await api.new_key(models=[name])
    error(*(await api.chat(key, "third")), 401, "key_model_access_denied")

    status, body = await api.post("/access_group/new", {"access_group": name, "model_names": ["nope"]})
    error(status, body, 400, text="Model(s) not found: nope")
    made = await api.ok("POST", "/access_group/new", {"access_group": name, "model_names": ["third"]})
    assert made == {"access_group": name, "model_names": ["third"], "model_ids": None, "models_updated": 1}
    status, body = await api.post("/access_group/new", {"access_group": name, "model_names": ["third"]})
    error(status, body, 409)
    status, body = await api.post("/access_group/new", {"access_group": "my-group", "model_names": ["third"]})
    error(status, body, 409)

    assert (await api.chat(key, "third"))[0] == 200
    error(*(await api.chat(key, "echo")), 401)
    assert name in await model_ids(api, key, only_model_access_groups="True")

    listed = (await api.ok("GET", "/access_group/list"))["access_groups"]
    by_name = {g["access_group"]: g for g in listed}
    assert by_name[name] == {"access_group": name, "model_names": ["third"], "deployment_count": 1}
    assert by_name["my-group"]["model_names"] == ["echo", "other"]
    assert await api.ok("GET", f"/access_group/{name}/info") == by_name[name]
    error(*(await api.get("/access_group/missing/info")), 404)

    await api.ok("PUT", f"/access_group/{name}/update", {"model_names": ["other"]})
    error(*(await api.chat(key, "third")), 401)
    assert (await api.chat(key, "other"))[0] == 200
    error(*(await api.call("PUT", "/access_group/my-group/update", {"model_names": ["other"]})), 400)

    deleted = await api.ok("DELETE", f"/access_group/{name}/delete")
    assert deleted["access_group"] == name and "deleted successfully" in deleted["message"]
    error(*(await api.chat(key, "other")), 401)
    error(*(await api.call("DELETE", f"/access_group/{name}/delete")), 404)


async def test_unified_access_groups_assigned_to_keys_and_teams(api: Api) -> None:
    made_key = await api.ok("POST", "/key/generate", {"models": ["echo"]})
    key, token = made_key["key"], made_key["token_id"]
    team = await api.ok("POST", "/team/new", {"models": ["echo"]})
    member = await api.new_key(team_id=team["team_id"])
    error(*(await api.chat(key, "third")), 401)

    status, body = await api.post("/v1/access_group", {"access_group_name": unique("g"),
                                                       "assigned_team_ids": ["missing-team"]})
    error(status, body, 400, text="Unknown team ids: missing-team")
    name = unique("unified")
    status, group = await api.post("/v1/unified_access_group", {
        "access_group_name": name, "description": "d", "access_model_names": ["third"],
        "access_mcp_server_ids": ["mcp-1"], "access_agent_ids": ["agent-1"],
        "assigned_key_ids": [token], "assigned_team_ids": [team["team_id"]]})
    assert status == 201, group
    group_id = group["access_group_id"]
    assert group["access_mcp_server_ids"] == ["mcp-1"] and group["access_agent_ids"] == ["agent-1"]
    assert group["created_at"] and group["updated_at"]
    error(*(await api.post("/v1/access_group", {"access_group_name": name})), 409)

    assert (await api.chat(key, "third"))[0] == 200
    assert (await api.chat(member, "third"))[0] == 200
    error(*(await api.chat(key, "other")), 401)

    assert group_id in [g["access_group_id"] for g in await api.ok("GET", "/v1/access_group")]
    assert (await api.ok("GET", f"/v1/access_group/{group_id}"))["access_group_name"] == name
    error(*(await api.get("/v1/access_group/missing")), 404)

    changed = await api.ok("PUT", f"/v1/access_group/{group_id}", {"assigned_key_ids": []})
    assert changed["assigned_key_ids"] == [] and changed["access_model_names"] == ["third"]
    error(*(await api.chat(key, "third")), 401)
    assert (await api.chat(member, "third"))[0] == 200

    status, _ = await api.call("DELETE", f"/v1/unified_access_group/{group_id}")
    assert status == 204
    error(*(await api.chat(member, "third")), 401)
    error(*(await api.call("DELETE", f"/v1/access_group/{group_id}")), 404)

    user_key = await api.new_key()
    error(*(await api.post("/v1/access_group", {"access_group_name": "x"}, key=user_key)), 403)


# --- policies ------------------------------------------------------------------------------------------------

async def test_policies_list_is_empty_in_litellm_shape(api: Api) -> None:
    assert await api.ok("GET", "/policies/list") == {"policies": [], "total_count": 0}
    assert await api.ok("GET", "/policies/attachments/list") == {"attachments": [], "total_count": 0}
    error(*(await api.get("/policies/list", key="sk-unknown")), 401)
