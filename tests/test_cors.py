"""CORS as LiteLLM answers it: every origin by default, preflights answered under every prefix, and
every kind of answer (JSON, a stream, an error) marked for the origin; configurable, or off."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from tests.harness import Gateway

MASTER = "sk-cors-master"
APP = "https://chat.example"
MODELS = [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}]
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def open_gateway() -> Iterator[Gateway]:
    with Gateway({"model_list": MODELS, "general_settings": {"master_key": MASTER},
                  "gateway_settings": {"path_prefixes": ["/olla/litellm"]}}) as gw:
        yield gw


def marked(headers: aiohttp.typedefs.LooseHeaders, origin: str = APP) -> bool:
    return (headers.get("Access-Control-Allow-Origin") == origin  # type: ignore[union-attr]
            and headers.get("Access-Control-Allow-Credentials") == "true")  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/olla/litellm/v1/chat/completions", "/key/generate"])
async def test_a_preflight_is_answered(open_gateway: Gateway, http: aiohttp.ClientSession, path: str) -> None:
    async with http.options(f"{open_gateway.url}{path}", headers={
            "Origin": APP, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-litellm-api-key"}) as r:
        assert r.status == 200
        assert marked(r.headers)
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert r.headers["Access-Control-Allow-Headers"] == "authorization, content-type, x-litellm-api-key"


async def test_every_kind_of_answer_is_marked_for_the_origin(open_gateway: Gateway,
                                                             http: aiohttp.ClientSession) -> None:
    headers = {"Origin": APP, "Authorization": f"Bearer {MASTER}"}
    async with http.post(f"{open_gateway.url}/v1/chat/completions", json=CHAT, headers=headers) as r:
        assert r.status == 200 and marked(r.headers)
    async with http.post(f"{open_gateway.url}/v1/chat/completions", json={**CHAT, "stream": True},
                         headers=headers) as r:
        assert r.status == 200 and marked(r.headers)
        assert (await r.read()).endswith(b"data: [DONE]\n\n")
    async with http.post(f"{open_gateway.url}/v1/chat/completions", json=CHAT, headers={"Origin": APP}) as r:
        assert r.status == 401 and marked(r.headers)  # the app can read why it was refused
    async with http.get(f"{open_gateway.url}/v1/models", headers={"Authorization": f"Bearer {MASTER}"}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers  # no Origin, no CORS headers


async def test_configured_origins_only(http: aiohttp.ClientSession) -> None:
    config = {"model_list": MODELS, "gateway_settings": {"cors_allow_origins": [APP]}}
    with Gateway(config) as gw:
        async with http.options(f"{gw.url}/v1/chat/completions", headers={
                "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}) as r:
            assert r.status == 400
            assert "Disallowed CORS origin" in (await r.json())["error"]["message"]
        async with http.post(f"{gw.url}/v1/chat/completions", json=CHAT,
                             headers={"Origin": "https://elsewhere.example"}) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
        async with http.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"Origin": APP}) as r:
            assert marked(r.headers)


async def test_cors_can_be_turned_off(http: aiohttp.ClientSession) -> None:
    with Gateway({"model_list": MODELS, "gateway_settings": {"cors_allow_origins": []}}) as gw:
        async with http.options(f"{gw.url}/v1/chat/completions", headers={
                "Origin": APP, "Access-Control-Request-Method": "POST"}) as r:
            assert r.status == 405
            assert set((await r.json())["error"]) == {"message", "type", "param", "code"}
        async with http.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"Origin": APP}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
