"""Who may call /key/generate: litellm_settings.key_generation_settings for users who are not admins, and
general_settings.custom_key_generate, an operator's async function that may refuse any request."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness import Gateway, run_cli
from tests.test_budgets import MASTER, base_config

RULES = {"key_generation_settings": {
    "team_key_generation": {"allowed_team_member_roles": ["admin"], "required_params": ["tags"]},
    "personal_key_generation": {"allowed_user_roles": ["proxy_admin"]}}}

HOOK = '''
async def decide(data):
    if data.team_id == "allowed-team" and data.model_dump().get("key_alias") != "vetoed":
        return {"decision": True}
    return {"decision": False, "message": "No valid team id provided."}


async def silent(data):
    return {"decision": False}


def blocking(data):
    return {"decision": True}
'''


async def post(http: aiohttp.ClientSession, gw: Gateway, path: str, body: dict[str, Any],
               key: str = MASTER) -> tuple[int, Any]:
    async with http.post(f"{gw.url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json()


async def user_key(http: aiohttp.ClientSession, gw: Gateway, user_id: str, role: str = "internal_user") -> str:
    status, made = await post(http, gw, "/user/new", {"user_id": user_id, "user_role": role})
    assert status == 200, made
    return str(made["key"])


@pytest.fixture(scope="module")
def ruled() -> Iterator[Gateway]:
    with Gateway(base_config(litellm_settings=RULES)) as gw:
        yield gw


async def test_team_and_personal_rules(ruled: Gateway, http: aiohttp.ClientSession) -> None:
    alice, bob, carol = [await user_key(http, ruled, u) for u in ("alice", "bob", "carol")]
    status, _ = await post(http, ruled, "/team/new", {"team_id": "t1", "members_with_roles": [
        {"role": "user", "user_id": "alice"}, {"role": "admin", "user_id": "bob"}]})
    assert status == 200

    def refused(result: tuple[int, Any], status: int, message: str) -> None:
        assert result[0] == status and result[1]["error"]["message"] == message, result

    refused(await post(http, ruled, "/key/generate", {}, alice), 400,
            "Personal key creation has been restricted by admin. Allowed roles=['proxy_admin']. "
            "Your role=internal_user")
    refused(await post(http, ruled, "/key/generate", {"team_id": "t1", "tags": ["a"]}, alice), 400,
            "Team member role user not in allowed_team_member_roles=['admin']")
    refused(await post(http, ruled, "/key/generate", {"team_id": "t1"}, bob), 400, "Required param tags not in data")
    refused(await post(http, ruled, "/key/generate", {"team_id": "t1", "tags": ["a"]}, carol), 400,
            "User=carol not assigned to team=t1")
    refused(await post(http, ruled, "/key/generate", {"team_id": "t1", "tags": ["a"], "user_id": "alice"}, bob),
            403, "User can only create keys for themselves. Got user_id=alice, Your ID=bob")
    refused(await post(http, ruled, "/key/generate", {"team_id": "nope", "tags": ["a"]}, bob), 400,
            "Unable to find team object in database. Team ID: nope")
    status, made = await post(http, ruled, "/key/generate", {"team_id": "t1", "tags": ["a"]}, bob)
    assert status == 200 and made["user_id"] == "bob" and made["team_id"] == "t1" and made["created_by"] == "bob"
    assert (await post(http, ruled, "/key/generate", {}))[0] == 200  # the master key is not held to them


async def test_viewers_and_keys_without_a_user_make_no_keys(ruled: Gateway, http: aiohttp.ClientSession) -> None:
    viewer = await user_key(http, ruled, "viewer", "internal_user_viewer")
    status, plain = await post(http, ruled, "/key/generate", {})
    for key in (viewer, plain["key"]):
        status, body = await post(http, ruled, "/key/generate", {}, key)
        assert status == 403 and "Only proxy admin" in body["error"]["message"]


async def test_without_rules_users_make_their_own_keys(http: aiohttp.ClientSession) -> None:
    with Gateway(base_config()) as gw:
        dana = await user_key(http, gw, "dana")
        status, made = await post(http, gw, "/key/generate", {"key_alias": "danas"}, dana)
        assert status == 200 and made["user_id"] == "dana"
        status, body = await post(http, gw, "/key/generate", {"user_id": "erin"}, dana)
        assert status == 403


@pytest.fixture
def hook_dir(tmp_path: Path) -> Path:
    (tmp_path / "keyhooks.py").write_text(HOOK)
    return tmp_path


def hooked(hook_dir: Path, name: str) -> Gateway:
    config = base_config(general_settings={"custom_key_generate": f"keyhooks.{name}"},
                         teams=[{"team_id": "allowed-team"}])
    return Gateway(config, env={"PYTHONPATH": os.pathsep.join([str(hook_dir), os.environ.get("PYTHONPATH", "")])})


async def test_custom_key_generate_decides(hook_dir: Path, http: aiohttp.ClientSession) -> None:
    with hooked(hook_dir, "decide") as gw:
        status, made = await post(http, gw, "/key/generate", {"team_id": "allowed-team"})
        assert status == 200 and made["team_id"] == "allowed-team"
        for body in ({}, {"team_id": "allowed-team", "key_alias": "vetoed"}):
            status, refused = await post(http, gw, "/key/generate", body)
            assert status == 403 and refused["error"]["message"] == "No valid team id provided."
            assert refused["error"]["type"] == "auth_error"
    with hooked(hook_dir, "silent") as gw:
        status, refused = await post(http, gw, "/key/generate", {})
        assert status == 403 and refused["error"]["message"] == "Authentication Failed - Custom Auth Rule"


@pytest.mark.parametrize(("path", "message"), [
    ("nosuchmodule.decide", "cannot import 'nosuchmodule'"),
    ("keyhooks.missing", "module 'keyhooks' has no 'missing'"),
    ("keyhooks.blocking", "must be an async function"),
    ("decide", "not a dotted path"),
])
def test_a_bad_custom_key_generate_stops_the_start(hook_dir: Path, path: str, message: str) -> None:
    config = base_config(general_settings={"custom_key_generate": path})
    result = run_cli(config, env={"PYTHONPATH": os.pathsep.join([str(hook_dir), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode != 0, result.stderr
    assert "general_settings.custom_key_generate" in result.stderr and message in result.stderr, result.stderr
