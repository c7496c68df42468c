"""/model/* and /credentials over real HTTP against a real gateway, on SQLite and on PostgreSQL; two
gateways on one PostgreSQL, and --workers 2 on one SQLite file, agreeing on the stored models."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway

MASTER = "sk-master-models"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HELLO = [{"role": "user", "content": "hello"}]
PATIENCE = 10.0  # the longest a change may take to reach another instance (the log is polled every 0.25 s)
CONFIG: dict[str, Any] = {
    "model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}, "model_info": {"id": "cfg-echo"}}],
    "general_settings": {"master_key": MASTER, "store_model_in_db": True},
}


def config_on(url: str | None) -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    if url is not None:
        config["general_settings"]["database_url"] = url
    return config


@pytest.fixture(params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    url = str(request.getfixturevalue("postgres_url")) if request.param == "postgres" else None
    gw = Gateway(config_on(url), env={"DATABASE_URL": "", "LITELLM_MASTER_KEY": "", "STORE_MODEL_IN_DB": ""})
    try:
        yield gw.start()
    finally:
        gw.stop()
    assert "unhandled error" not in gw.log() and "Traceback" not in gw.log(), gw.log()


async def call(http: aiohttp.ClientSession, gw: Gateway, method: str, path: str, payload: Any = None,
               key: str = MASTER, **params: str) -> tuple[int, Any]:
    async with http.request(method, gw.url + path, json=payload, params=params or None,
                            headers={"Authorization": f"Bearer {key}"}) as response:
        return response.status, await response.json(content_type=None)


async def chat(http: aiohttp.ClientSession, gw: Gateway, model: str) -> tuple[int, Any]:
    return await call(http, gw, "POST", "/v1/chat/completions", {"model": model, "messages": HELLO})


async def eventually(http: aiohttp.ClientSession, gw: Gateway, model: str, status: int) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        got, answer = await chat(http, gw, model)
        if got == status:
            return answer
        assert loop.time() < deadline, f"{gw.url} answers {got} for {model}, not {status}: {answer}"
        await asyncio.sleep(0.05)


async def test_models_added_served_changed_and_deleted(gateway: Gateway, http: aiohttp.ClientSession,
                                                       upstream: FakeUpstream) -> None:
    name = f"stored-{uuid.uuid4().hex[:6]}"
    status, made = await call(http, gateway, "POST", "/model/new", {
        "model_name": name, "model_info": {"mode": "chat", "team": None},
        "litellm_params": {"model": "openai/up-model", "api_base": upstream.base_url, "api_key": "sk-up-secret",
                           "rpm": "100", "my_own_param": "kept"}})
    assert status == 200, made
    model_id = made["model_id"]
    assert made["model_name"] == name and made["litellm_params"]["rpm"] == 100
    assert made["litellm_params"]["my_own_param"] == "kept" and made["model_info"]["db_model"] is True
    assert "sk-up-secret" not in str(made)

    status, answer = await chat(http, gateway, name)
    assert status == 200 and answer["id"] == "chatcmpl-alpha", answer
    assert upstream.seen[-1].body["model"] == "up-model"
    assert upstream.seen[-1].headers["Authorization"] == "Bearer sk-up-secret"

    _, listed = await call(http, gateway, "GET", "/v1/models")
    assert {name, "echo"} <= {m["id"] for m in listed["data"]}
    _, info = await call(http, gateway, "GET", "/model/info")
    cards = {c["model_info"]["id"]: c for c in info["data"]}
    assert cards[model_id]["model_info"]["db_model"] is True and cards["cfg-echo"]["model_info"]["db_model"] is False
    assert "sk-up-secret" not in str(info)
    _, paged = await call(http, gateway, "GET", "/v2/model/info", search=name)
    assert [c["model_info"]["id"] for c in paged["data"]] == [model_id] and paged["total_count"] == 1
    _, groups = await call(http, gateway, "GET", "/model_group/info", model_group=name)
    assert groups["data"][0]["rpm"] == 100
    _, health = await call(http, gateway, "GET", "/health", model=name)
    assert [e["model_id"] for e in health["healthy_endpoints"]] == [model_id]

    # PATCH changes only what it is given.
    status, patched = await call(http, gateway, "PATCH", f"/model/{model_id}/update",
                                 {"litellm_params": {"rpm": 7}, "model_info": {"note": "patched"}})
    assert status == 200, patched
    assert patched["litellm_params"]["rpm"] == 7 and patched["litellm_params"]["model"] == "openai/up-model"
    assert patched["model_info"]["note"] == "patched" and patched["model_info"]["mode"] == "chat"
    assert patched["model_name"] == name
    _, groups = await call(http, gateway, "GET", "/model_group/info", model_group=name)
    assert groups["data"][0]["rpm"] == 7

    # /model/update (as LiteLLM's CLI sends it: a top-level id) renames the group.
    renamed = f"{name}-renamed"
    status, updated = await call(http, gateway, "POST", "/model/update",
                                 {"id": model_id, "model_name": renamed, "litellm_params": {"weight": 2}})
    assert status == 200 and updated["model_name"] == renamed, updated
    assert (await chat(http, gateway, name))[0] == 404
    assert (await chat(http, gateway, renamed))[0] == 200

    status, deleted = await call(http, gateway, "POST", "/model/delete", {"id": model_id})
    assert status == 200 and deleted == {"message": f"Model: {model_id} deleted successfully"}
    assert (await chat(http, gateway, renamed))[0] == 404
    assert (await chat(http, gateway, "echo"))[0] == 200


async def test_bad_model_requests(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, error = await call(http, gateway, "POST", "/model/new", {"litellm_params": {"model": "mock/x"}})
    assert status == 400 and "model_name" in error["error"]["message"], error
    status, error = await call(http, gateway, "POST", "/model/new",
                               {"model_name": "x", "litellm_params": {"model": "nosuch/x"}})
    assert status == 400 and "unknown provider 'nosuch'" in error["error"]["message"], error
    assert "hosted_vllm" in error["error"]["message"] and error["error"]["param"] == "litellm_params.model"
    status, error = await call(http, gateway, "POST", "/model/new", {"model_name": "x", "litellm_params": {}})
    assert status == 400 and "model" in error["error"]["message"]
    status, error = await call(http, gateway, "POST", "/model/new",
                               {"model_name": "x", "litellm_params": {"model": "mock/x", "rpm": "lots"}})
    assert status == 400 and error["error"]["param"] == "litellm_params.rpm", error
    status, error = await call(http, gateway, "POST", "/model/new", {
        "model_name": "x", "litellm_params": {"model": "mock/x"}, "model_info": {"id": "cfg-echo"}})
    assert status == 400 and "config" in error["error"]["message"]

    status, error = await call(http, gateway, "PATCH", "/model/no-such-id/update", {"model_name": "y"})
    assert status == 404 and "not found" in error["error"]["message"], error
    status, error = await call(http, gateway, "POST", "/model/delete", {"id": "no-such-id"})
    assert status == 400 and "not found" in error["error"]["message"], error  # LiteLLM's status here
    for method, path, payload in (("POST", "/model/delete", {"id": "cfg-echo"}),
                                  ("PATCH", "/model/cfg-echo/update", {"model_name": "y"}),
                                  ("POST", "/model/update", {"model_info": {"id": "cfg-echo"},
                                                             "litellm_params": {"rpm": 1}})):
        status, error = await call(http, gateway, method, path, payload)
        assert status == 400 and "config" in error["error"]["message"], (path, error)
    assert (await chat(http, gateway, "echo"))[0] == 200

    status, made = await call(http, gateway, "POST", "/key/generate", {})
    user_key = made["key"]
    for method, path, payload in (("POST", "/model/new", {"model_name": "x", "litellm_params": {"model": "mock/x"}}),
                                  ("POST", "/model/delete", {"id": "cfg-echo"}),
                                  ("PATCH", "/model/cfg-echo/update", {}),
                                  ("GET", "/credentials", None),
                                  ("POST", "/credentials", {"credential_name": "c", "credential_info": {},
                                                            "credential_values": {"api_key": "k"}})):
        status, error = await call(http, gateway, method, path, payload, key=user_key)
        assert status == 403, (path, error)


async def test_credentials_feed_models_and_follow_changes(gateway: Gateway, http: aiohttp.ClientSession,
                                                          upstream: FakeUpstream, upstream_b: FakeUpstream) -> None:
    cred = f"cred-{uuid.uuid4().hex[:6]}"
    status, made = await call(http, gateway, "POST", "/credentials", {
        "credential_name": cred, "credential_info": {"team": "ml"},
        "credential_values": {"api_key": "sk-credential-secret", "api_base": upstream.base_url}})
    assert status == 200 and made == {"success": True, "message": "Credential created successfully"}
    status, again = await call(http, gateway, "POST", "/credentials", {
        "credential_name": cred, "credential_info": {}, "credential_values": {"api_key": "x"}})
    assert status == 409, again
    status, error = await call(http, gateway, "POST", "/credentials", {"credential_name": "c2", "credential_info": {}})
    assert status == 400, error

    _, listed = await call(http, gateway, "GET", "/credentials")
    card = next(c for c in listed["credentials"] if c["credential_name"] == cred)
    assert card["credential_values"] == {"api_key": "sk****et", "api_base": upstream.base_url}
    assert card["credential_info"] == {"team": "ml"}
    status, one = await call(http, gateway, "GET", f"/credentials/by_name/{cred}")
    assert status == 200 and one["credential_values"]["api_key"] == "sk****et"
    assert (await call(http, gateway, "GET", "/credentials/by_name/nope"))[0] == 404

    name = f"via-cred-{uuid.uuid4().hex[:6]}"
    status, model = await call(http, gateway, "POST", "/model/new", {
        "model_name": name, "litellm_params": {"model": "hosted_vllm/served", "litellm_credential_name": cred}})
    assert status == 200, model
    status, answer = await chat(http, gateway, name)
    assert status == 200 and answer["id"] == "chatcmpl-alpha", answer
    assert upstream.seen[-1].headers["Authorization"] == "Bearer sk-credential-secret"
    status, by_model = await call(http, gateway, "GET", f"/credentials/by_model/{model['model_id']}")
    assert status == 200 and by_model["credential_values"]["api_key"] == "sk****et"
    assert "sk-credential-secret" not in str(await call(http, gateway, "GET", "/model/info"))

    status, changed = await call(http, gateway, "PATCH", f"/credentials/{cred}", {
        "credential_info": {}, "credential_values": {"api_base": upstream_b.base_url}})
    assert status == 200, changed
    answer = await eventually(http, gateway, name, 200)
    assert answer["id"] == "chatcmpl-beta", answer
    assert upstream_b.seen[-1].headers["Authorization"] == "Bearer sk-credential-secret"
    assert (await call(http, gateway, "PATCH", "/credentials/nope", {"credential_info": {}}))[0] == 404

    status, gone = await call(http, gateway, "DELETE", f"/credentials/{cred}")
    assert status == 200 and gone["success"] is True
    await eventually(http, gateway, name, 404)  # without its credential the model is not served
    assert (await call(http, gateway, "DELETE", f"/credentials/{cred}"))[0] == 404


async def test_a_model_may_come_before_its_credential(gateway: Gateway, http: aiohttp.ClientSession,
                                                     upstream: FakeUpstream) -> None:
    """As LiteLLM: declarative tools add models before credentials, so the model is accepted and is
    served from the moment its credential exists."""
    cred, name = f"later-{uuid.uuid4().hex[:6]}", f"waits-{uuid.uuid4().hex[:6]}"
    status, made = await call(http, gateway, "POST", "/model/new", {
        "model_name": name, "litellm_params": {"model": "openai/echo", "litellm_credential_name": cred}})
    assert status == 200, made
    assert (await chat(http, gateway, name))[0] == 404
    status, _ = await call(http, gateway, "POST", "/credentials", {
        "credential_name": cred, "credential_info": {},
        "credential_values": {"api_key": "sk-credential-secret", "api_base": upstream.base_url}})
    assert status == 200
    await eventually(http, gateway, name, 200)


def test_store_model_in_db_off_refuses_model_new(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    config = config_on(None)
    config["general_settings"]["store_model_in_db"] = False
    with Gateway(config, env={"STORE_MODEL_IN_DB": ""}) as gw:
        request = urllib.request.Request(
            gw.url + "/model/new", method="POST", headers={**ADMIN, "Content-Type": "application/json"},
            data=b'{"model_name": "x", "litellm_params": {"model": "mock/x"}}')
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400  # LiteLLM answers 500; the config, not the server, refuses it
        assert "store_model_in_db" in refused.value.read().decode()


async def test_two_gateways_on_one_postgres_agree(postgres_url: str, http: aiohttp.ClientSession) -> None:
    config = config_on(postgres_url)
    with Gateway(config) as first, Gateway(config) as second:
        name = f"fleet-{uuid.uuid4().hex[:6]}"
        status, made = await call(http, first, "POST", "/model/new", {
            "model_name": name, "litellm_params": {"model": "mock/fleet", "mock_response": "from the store"}})
        assert status == 200, made
        answer = await eventually(http, second, name, 200)
        assert answer["choices"][0]["message"]["content"] == "from the store"
        status, _ = await call(http, second, "POST", "/model/delete", {"id": made["model_id"]})
        assert status == 200
        await eventually(http, first, name, 404)


async def test_workers_agree_on_stored_models(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    config = config_on(f"sqlite:///{tmp_path / 'workers.db'}")
    with Gateway(config, "--workers", "2") as gw:
        gw.wait_for_workers(2)
        name = f"workers-{uuid.uuid4().hex[:6]}"
        status, made = await call(http, gw, "POST", "/model/new",
                                  {"model_name": name, "litellm_params": {"model": "mock/w"}})
        assert status == 200, made
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        # Batches wide enough that both workers answer some: all must serve it.
        while {s for s, _ in await asyncio.gather(*(chat(http, gw, name) for _ in range(30)))} != {200}:
            assert loop.time() < deadline, "a worker does not serve the added model"
            await asyncio.sleep(0.05)
        await call(http, gw, "POST", "/model/delete", {"id": made["model_id"]})
        while {s for s, _ in await asyncio.gather(*(chat(http, gw, name) for _ in range(30)))} != {404}:
            assert loop.time() < deadline, "a worker still serves the deleted model"
            await asyncio.sleep(0.05)
