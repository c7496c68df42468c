"""Scheduled key rotation over HTTP: LiteLLM's LITELLM_KEY_ROTATION_* variables, keys with auto_rotate get a
new value as /key/regenerate makes one, and instances running the job together rotate a key once."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aiohttp
import pytest

from tests.harness import Gateway, run_cli
from tests.test_budgets import ADMIN, base_config, chat, new_key

ROTATING = {"LITELLM_KEY_ROTATION_ENABLED": "true", "LITELLM_KEY_ROTATION_CHECK_INTERVAL_SECONDS": "0.2"}


async def keys_of(http: aiohttp.ClientSession, gw: Gateway, user_id: str) -> list[dict[str, Any]]:
    async with http.get(f"{gw.url}/key/list", headers=ADMIN,
                        params={"user_id": user_id, "return_full_object": "true", "size": "100"}) as r:
        assert r.status == 200
        return list((await r.json())["keys"])


async def until_rotated(http: aiohttp.ClientSession, gw: Gateway, user_id: str, count: int) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        keys = await keys_of(http, gw, user_id)
        if any(k["rotation_count"] >= count for k in keys):
            return keys
        assert loop.time() < deadline, keys
        await asyncio.sleep(0.1)


def token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


async def test_a_due_key_is_rotated_and_the_old_one_works_for_the_grace_period(http: aiohttp.ClientSession) -> None:
    env = {**ROTATING, "LITELLM_KEY_ROTATION_GRACE_PERIOD": "1h"}
    with Gateway(base_config(), env=env) as gw:
        made = await new_key(http, gw, user_id="rotor", key_alias="rotating", auto_rotate=True,
                             rotation_interval="1s", max_budget=5.0, models=["metered"])
        assert made["auto_rotate"] is True and made["key_rotation_at"] and made["rotation_count"] == 0
        keys = await until_rotated(http, gw, "rotor", 1)
        new = max(keys, key=lambda k: k["rotation_count"])  # it may have been rotated again already
        old = next(k for k in keys if k["token"] == token(made["key"]))
        assert new["key_alias"] == "rotating" and new["max_budget"] == 5.0 and new["models"] == ["metered"]
        assert new["last_rotation_at"] and new["key_rotation_at"] > new["last_rotation_at"]
        assert old["key_alias"] is None and old["expires"] and old["key_rotation_at"] is None
        assert (await chat(http, gw, made["key"]))[0] == 200  # within its grace period
        assert "key rotation: rotating rotated to sk-..." in gw.log()


async def test_without_a_grace_period_the_old_key_stops_at_once(http: aiohttp.ClientSession) -> None:
    with Gateway(base_config(), env=ROTATING) as gw:
        made = await new_key(http, gw, user_id="rotor2", auto_rotate=True, rotation_interval="1s")
        await until_rotated(http, gw, "rotor2", 1)
        status, body, _ = await chat(http, gw, made["key"])
        assert status == 401 and body["error"]["type"] == "token_not_found_in_db"


async def test_no_rotation_unless_enabled_or_asked(http: aiohttp.ClientSession) -> None:
    env = {"LITELLM_KEY_ROTATION_CHECK_INTERVAL_SECONDS": "0.2"}
    with Gateway(base_config(), env=env) as gw:
        made = await new_key(http, gw, user_id="still", auto_rotate=True, rotation_interval="1s")
        other = await new_key(http, gw, user_id="still", rotation_interval="1s")
        assert other["key_rotation_at"] is None
        async with http.post(f"{gw.url}/key/update", headers=ADMIN,
                             json={"key": made["key"], "auto_rotate": False}) as r:
            assert r.status == 200 and (await r.json())["key_rotation_at"] is None
        assert "key rotation" not in gw.log()
        assert (await chat(http, gw, made["key"]))[0] == 200


async def test_update_schedules_rotation_and_refuses_bad_intervals(http: aiohttp.ClientSession) -> None:
    with Gateway(base_config()) as gw:
        made = await new_key(http, gw)
        for body, param in (({"auto_rotate": True}, "rotation_interval"),
                            ({"auto_rotate": True, "rotation_interval": "monthly"}, "rotation_interval")):
            async with http.post(f"{gw.url}/key/update", headers=ADMIN, json={"key": made["key"], **body}) as r:
                assert r.status == 400 and (await r.json())["error"]["param"] == param
        async with http.post(f"{gw.url}/key/update", headers=ADMIN,
                             json={"key": made["key"], "auto_rotate": True, "rotation_interval": "90d"}) as r:
            updated = await r.json()
        assert updated["auto_rotate"] is True and updated["rotation_interval"] == "90d"
        assert updated["key_rotation_at"] > updated["updated_at"]


async def test_instances_running_the_job_together_rotate_each_key_once(database_url: str,
                                                                        http: aiohttp.ClientSession) -> None:
    config = base_config(general_settings={"database_url": database_url})
    env = {**ROTATING, "LITELLM_KEY_ROTATION_CHECK_INTERVAL_SECONDS": "0.05", "LITELLM_KEY_ROTATION_GRACE_PERIOD": "1h"}
    with Gateway(config, env=env) as first, Gateway(config, env=env) as second:
        await new_key(http, first, user_id="shared-rotor", auto_rotate=True, rotation_interval="2s")
        keys = await until_rotated(http, second, "shared-rotor", 2)
        counts = sorted(k["rotation_count"] for k in keys)
        assert counts == list(range(len(counts))), counts  # never two keys made from one


@pytest.mark.parametrize(("env", "message"), [
    ({"LITELLM_KEY_ROTATION_GRACE_PERIOD": "soon"}, "LITELLM_KEY_ROTATION_GRACE_PERIOD"),
    ({"LITELLM_KEY_ROTATION_CHECK_INTERVAL_SECONDS": "daily"}, "LITELLM_KEY_ROTATION_CHECK_INTERVAL_SECONDS"),
])
def test_bad_rotation_settings_stop_the_start(env: dict[str, str], message: str) -> None:
    result = run_cli(base_config(), env={**ROTATING, **env})
    assert result.returncode != 0 and message in result.stderr, result.stderr
