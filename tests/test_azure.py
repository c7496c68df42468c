"""Azure OpenAI upstreams over real HTTP: the OpenAI SDK to the gateway, the gateway to a fake Azure (URL shape,
api-version, api-key or Entra token), Azure's content-filter fields and empty-choices first chunk passed through,
usage read from Azure's answers into spend and budgets, Entra ID tokens fetched once, shared and refreshed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.cloud_fakes import AZURE_KEY, AZURE_SCOPE, CLIENT_ID, CLIENT_SECRET, PROMPT_FILTER, SAFE, TENANT, FakeAzure
from tests.harness import Gateway, run_cli, spend_record

MASTER = "sk-azure-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
IN_PRICE, OUT_PRICE = 1e-4, 2e-4
PRICES = {"input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE}
HELLO = [{"role": "user", "content": "What is color?"}]


def azure(name: str, fake: FakeAzure, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": "azure/my-gpt4o", "api_base": fake.url, **PRICES,
                                                   **params}}


def entra(name: str, fake: FakeAzure, **params: Any) -> dict[str, Any]:
    return azure(name, fake, tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                 azure_authority_host=fake.authority, **params)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAzure]:
    upstream = FakeAzure()
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeAzure) -> Iterator[Gateway]:
    config = {"model_list": [
        azure("gpt-4o", fake, api_key=AZURE_KEY),
        azure("gpt-4o-dated", fake, api_key=AZURE_KEY, api_version="2025-01-01-preview"),
        {"model_name": "embed", "litellm_params": {"model": "azure/my-embedding", "api_base": fake.url + "/",
                                                   "api_key": AZURE_KEY, **PRICES},
         "model_info": {"mode": "embedding"}},
        azure("from-env", fake),
        azure("gpt-4o-entra", fake, tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
              azure_authority_host=fake.authority),
        azure("wrong-secret", fake, tenant_id=TENANT, client_id=CLIENT_ID, client_secret="not-the-secret",
              azure_authority_host=fake.authority),
        azure("static-token", fake, azure_ad_token="tok-static"),
        {"model_name": "az/*", "litellm_params": {"model": "azure/*", "api_base": fake.url, "api_key": AZURE_KEY}},
    ], "general_settings": {"master_key": MASTER}}
    with Gateway(config, env={"AZURE_API_KEY": AZURE_KEY}) as gw:
        yield gw


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def sdk(gw: Gateway, key: str = MASTER) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def charge(usage: dict[str, int]) -> float:
    return usage["prompt_tokens"] * IN_PRICE + usage.get("completion_tokens", 0) * OUT_PRICE


async def test_chat_goes_to_the_deployment_url_with_api_version_and_api_key(
        gateway: Gateway, fake: FakeAzure, http: aiohttp.ClientSession) -> None:
    before = len(fake.seen)
    async with sdk(gateway) as client:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    answer = raw.parse()
    seen = fake.seen[before]
    assert seen.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert seen.query == {"api-version": "2024-10-21"}
    assert seen.headers["api-key"] == AZURE_KEY and "Authorization" not in seen.headers
    assert seen.body["model"] == "my-gpt4o" and seen.body["messages"] == HELLO
    assert raw.http_response.content == seen.sent  # Azure's answer byte for byte
    assert answer.model_extra is not None and answer.model_extra["prompt_filter_results"] == PROMPT_FILTER
    assert answer.choices[0].model_extra is not None
    assert answer.choices[0].model_extra["content_filter_results"] == SAFE
    assert raw.headers["llm_provider-x-ms-region"] == "Sweden Central"
    record = await spend_record(http, gateway, raw.headers["x-request-id"], ADMIN)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (900, 600)
    assert record["spend"] == pytest.approx(charge(fake.usage))
    assert record["metadata"]["usage_estimated"] is False


async def test_the_responses_api_goes_to_azures_own_path_untouched(
        gateway: Gateway, fake: FakeAzure, http: aiohttp.ClientSession) -> None:
    before = len(fake.seen)
    async with sdk(gateway) as client:
        raw = await client.responses.with_raw_response.create(model="gpt-4o", input="What is color?")
    seen = fake.seen[before]
    assert (seen.path, seen.query) == ("/openai/responses", {"api-version": "2024-10-21"})
    assert seen.body == {"model": "my-gpt4o", "input": "What is color?"} and seen.headers["api-key"] == AZURE_KEY
    assert raw.http_response.content == seen.sent and raw.parse().output_text == "Color is light."
    record = await spend_record(http, gateway, raw.headers["x-request-id"], ADMIN)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (36, 87)
    assert record["spend"] == pytest.approx(36 * IN_PRICE + 87 * OUT_PRICE)
    made = raw.parse()
    async with sdk(gateway) as client:  # stored at Azure: read back, listed and deleted there
        assert (await client.responses.retrieve(made.id)).output_text == "Color is light."
        items = await client.responses.input_items.list(made.id, limit=5)  # a query of the client's own
        assert [item.id for item in items.data] == ["msg_input_1"]
        deleted = await client.responses.with_raw_response.delete(made.id)
        assert deleted.status_code == 200
    paths = [(s.path, s.query) for s in fake.seen[-3:]]
    assert paths == [(f"/openai/responses/{made.id}", {"api-version": "2024-10-21"}),
                     (f"/openai/responses/{made.id}/input_items", {"limit": "5", "api-version": "2024-10-21"}),
                     (f"/openai/responses/{made.id}", {"api-version": "2024-10-21"})]
    assert all(s.headers["api-key"] == AZURE_KEY for s in fake.seen[-3:])


async def test_api_version_from_the_config_and_from_the_environment(
        fake: FakeAzure, gateway: Gateway) -> None:
    before = len(fake.seen)
    fake.api_version = "2025-01-01-preview"
    try:
        async with sdk(gateway) as client:
            await client.chat.completions.create(model="gpt-4o-dated", messages=HELLO)  # type: ignore[arg-type]
            with pytest.raises(openai.NotFoundError) as wrong:
                await client.chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    finally:
        fake.api_version = "2024-10-21"
    assert [s.query["api-version"] for s in fake.seen[before:]] == ["2025-01-01-preview", "2024-10-21"]
    assert "Resource not found" in str(wrong.value)
    config = {"model_list": [azure("env-version", fake, api_key=AZURE_KEY)]}
    fake.api_version = "2024-06-01"
    try:
        with Gateway(config, env={"AZURE_API_VERSION": "2024-06-01"}) as gw:
            async with sdk(gw, "anything") as client:
                answer = await client.chat.completions.create(model="env-version", messages=HELLO)  # type: ignore[arg-type]
    finally:
        fake.api_version = "2024-10-21"
    assert answer.choices[0].message.content == "Color is light."
    assert fake.seen[-1].query == {"api-version": "2024-06-01"}


async def test_key_from_azure_api_key_and_a_static_ad_token(gateway: Gateway, fake: FakeAzure) -> None:
    fake.issued.append("tok-static")  # as if Entra had issued it to whoever configured it
    before = len(fake.seen)
    async with sdk(gateway) as client:
        await client.chat.completions.create(model="from-env", messages=HELLO)  # type: ignore[arg-type]
        await client.chat.completions.create(model="static-token", messages=HELLO)  # type: ignore[arg-type]
    env_seen, token_seen = fake.seen[before:]
    assert env_seen.headers["api-key"] == AZURE_KEY
    assert token_seen.headers["Authorization"] == "Bearer tok-static" and "api-key" not in token_seen.headers


async def test_stream_passes_azures_filter_chunks_through_and_its_usage_is_charged(
        gateway: Gateway, fake: FakeAzure, http: aiohttp.ClientSession) -> None:
    """The client asks for no usage: the gateway asks Azure for it, charges it, and strips only what it added;
    Azure's first chunk (empty choices and id, prompt_filter_results) reaches the client untouched."""
    before = len(fake.seen)
    async with sdk(gateway) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=HELLO, stream=True)  # type: ignore[arg-type]
        request_id = raw.headers["x-request-id"]
        chunks = [chunk async for chunk in raw.parse()]
    seen = fake.seen[before]
    assert seen.body["stream_options"] == {"include_usage": True}
    first = chunks[0]
    assert first.choices == [] and first.id == "" and first.model == ""
    assert first.model_extra is not None and first.model_extra["prompt_filter_results"] == PROMPT_FILTER
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Color is light."
    assert all(c.usage is None for c in chunks)
    assert chunks[2].choices[0].model_extra is not None
    assert chunks[2].choices[0].model_extra["content_filter_results"] == SAFE
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (900, 600)
    assert record["metadata"]["usage_estimated"] is False
    assert record["spend"] == pytest.approx(charge(fake.usage))


async def test_a_stream_that_asked_for_usage_is_relayed_byte_for_byte(gateway: Gateway, fake: FakeAzure) -> None:
    before = len(fake.seen)
    async with aiohttp.ClientSession() as session, session.post(
            f"{gateway.url}/v1/chat/completions", headers=ADMIN,
            json={"model": "gpt-4o", "messages": HELLO, "stream": True,
                  "stream_options": {"include_usage": True}}) as r:
        received = await r.read()
    assert received == fake.seen[before].sent
    assert received.startswith(b'data: {"choices":[],"created":0,"id":"","model":"","object":"",'
                               b'"prompt_filter_results":')


async def test_embeddings_and_completions_use_their_deployment_paths(
        gateway: Gateway, fake: FakeAzure, http: aiohttp.ClientSession) -> None:
    before = len(fake.seen)
    async with sdk(gateway) as client:
        vectors = await client.embeddings.with_raw_response.create(model="embed", input=["a", "b"])
        completion = await client.completions.create(model="gpt-4o", prompt="Say")
    assert [(s.path, s.query["api-version"]) for s in fake.seen[before:]] == [
        ("/openai/deployments/my-embedding/embeddings", "2024-10-21"),
        ("/openai/deployments/my-gpt4o/completions", "2024-10-21")]
    assert len(vectors.parse().data) == 2
    assert completion.choices[0].text == " completed"
    record = await spend_record(http, gateway, vectors.headers["x-request-id"], ADMIN)
    assert record["prompt_tokens"] == 16 and record["spend"] == pytest.approx(16 * IN_PRICE)


async def test_a_budget_is_charged_what_azure_reported(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    """The reservation (a short prompt, max_tokens 5) fits the budget; Azure reports 1500 tokens, which spend
    it all: the next request is refused."""
    async with http.post(f"{gateway.url}/key/generate", json={"max_budget": 0.02}, headers=ADMIN) as r:
        key = (await r.json())["key"]
    async with sdk(gateway, key) as client:
        await client.chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=5)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=5)  # type: ignore[arg-type]
    assert "Budget has been exceeded" in str(refused.value)
    async with http.get(f"{gateway.url}/key/info", params={"key": key}, headers=ADMIN) as r:
        info = await r.json()
    assert info["info"]["spend"] == pytest.approx(900 * IN_PRICE + 600 * OUT_PRICE)


async def test_entra_token_is_fetched_once_for_concurrent_requests_and_cached(
        gateway: Gateway, fake: FakeAzure) -> None:
    before_tokens, before = len(fake.token_requests), len(fake.seen)
    async with sdk(gateway) as client:
        await asyncio.gather(*(client.chat.completions.create(model="gpt-4o-entra", messages=HELLO)  # type: ignore[arg-type]
                               for _ in range(12)))
        for _ in range(3):
            await client.chat.completions.create(model="gpt-4o-entra", messages=HELLO)  # type: ignore[arg-type]
    grants = fake.token_requests[before_tokens:]
    assert len(grants) == 1
    assert grants[0] == {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                         "scope": AZURE_SCOPE}
    token = fake.issued[-1]
    seen = fake.seen[before:]
    assert len(seen) == 15
    assert {s.headers.get("Authorization") for s in seen} == {f"Bearer {token}"}
    assert not any("api-key" in s.headers for s in seen)
    assert all(CLIENT_SECRET not in orjson.dumps(s.body).decode() for s in seen)


async def test_a_refused_entra_grant_is_a_clear_502(gateway: Gateway, fake: FakeAzure) -> None:
    before = len(fake.seen)
    async with sdk(gateway) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            await client.chat.completions.create(model="wrong-secret", messages=HELLO)  # type: ignore[arg-type]
    assert failed.value.status_code == 502
    assert "AADSTS7000215" in str(failed.value) and "no access token for upstream" in str(failed.value)
    assert len(fake.seen) == before  # nothing went to Azure without a token


async def test_a_token_near_expiry_is_used_while_a_new_one_is_fetched() -> None:
    """Tokens issued for 200 s are inside the last five minutes from the start: the first request waits for one;
    the next goes with it at once while a refresh runs, and later ones carry the new token."""
    fake = FakeAzure(token_lifetime=200)
    fake.start()
    try:
        with Gateway({"model_list": [entra("entra", fake)]}) as gw:
            async with sdk(gw, "anything") as client:
                for _ in range(2):
                    await client.chat.completions.create(model="entra", messages=HELLO)  # type: ignore[arg-type]
                assert [s.headers["Authorization"] for s in fake.seen] == ["Bearer tok-1", "Bearer tok-1"]
                for _ in range(50):
                    if fake.seen[-1].headers["Authorization"] != "Bearer tok-1":
                        break
                    await client.chat.completions.create(model="entra", messages=HELLO)  # type: ignore[arg-type]
        used = [s.headers["Authorization"].removeprefix("Bearer ") for s in fake.seen]
        assert used[-1] == "tok-2"
        assert used == sorted(used, key=fake.issued.index)  # never back to an older token
        assert len(fake.token_requests) <= len(fake.seen)  # at most one refresh at a time, on the way
    finally:
        fake.stop()


async def test_an_expired_token_is_waited_for() -> None:
    """Tokens that expire as they come: each request waits for a fresh one, and uses it."""
    fake = FakeAzure(token_lifetime=0)
    fake.start()
    try:
        with Gateway({"model_list": [entra("entra", fake)]}) as gw:
            async with sdk(gw, "anything") as client:
                for _ in range(3):
                    with pytest.raises(openai.InternalServerError) as failed:
                        await client.chat.completions.create(model="entra", messages=HELLO)  # type: ignore[arg-type]
                    assert "no token from Entra ID" in str(failed.value)
        assert len(fake.token_requests) == 3 and fake.seen == []
    finally:
        fake.stop()


def test_missing_settings_stop_the_start(fake: FakeAzure) -> None:
    cases = [
        ({"model": "azure/x", "api_key": "k"}, "an azure/ deployment needs its resource's endpoint"),
        ({"model": "azure/x", "api_base": fake.url}, "needs api_key (or AZURE_API_KEY), azure_ad_token"),
        ({"model": "azure/x", "api_base": fake.url, "tenant_id": TENANT, "client_id": CLIENT_ID},
         "client_secret missing"),
        ({"model": "azuer/x", "api_base": fake.url}, "unknown provider 'azuer'"),
    ]
    for params, words in cases:
        result = run_cli({"model_list": [{"model_name": "m", "litellm_params": params}]})
        assert result.returncode != 0 and words in result.stderr, result.stderr
    result = run_cli({"model_list": [{"model_name": "m", "litellm_params": {"model": "azuer/x"}}]})
    assert "azure, azure_ai" in result.stderr and "vertex_ai" in result.stderr


async def test_azure_ai_foundry_posts_openai_paths_with_api_key() -> None:
    """azure_ai/: `{api_base}/chat/completions` with `api-key`, as LiteLLM sends it to Azure AI Foundry."""
    seen: list[tuple[str, str, str | None]] = []

    async def chat(request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = await request.json()
        seen.append((request.path_qs, body["model"], request.headers.get("api-key")))
        return aiohttp.web.json_response({
            "id": "foundry-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    app = aiohttp.web.Application()
    app.router.add_post("/models/chat/completions", chat)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        config = {"model_list": [{"model_name": "llama", "litellm_params": {
            "model": "azure_ai/Llama-3.3-70B-Instruct", "api_base": f"http://127.0.0.1:{port}/models",
            "api_version": "2024-05-01-preview"}}]}
        with Gateway(config, env={"AZURE_AI_API_KEY": "foundry-key"}) as gw:
            async with sdk(gw, "anything") as client:
                answer = await client.chat.completions.create(model="llama", messages=HELLO)  # type: ignore[arg-type]
    finally:
        await runner.cleanup()
    assert answer.choices[0].message.content == "hi"
    assert seen == [("/models/chat/completions?api-version=2024-05-01-preview", "Llama-3.3-70B-Instruct",
                     "foundry-key")]


async def test_model_info_shows_no_secret(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/model/info", headers=ADMIN) as r:
        shown = await r.text()
    assert r.status == 200 and "gpt-4o-entra" in shown and TENANT in shown
    for secret in (CLIENT_SECRET, AZURE_KEY, "tok-static"):
        assert secret not in shown


async def test_health_probes_use_azures_urls_and_tokens(gateway: Gateway, fake: FakeAzure,
                                                        http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/health", params={"model": "gpt-4o-entra"}, headers=ADMIN) as r:
        healthy = await r.json()
    assert healthy["healthy_count"] == 1, healthy
    assert fake.seen[-1].path == "/openai/deployments/my-gpt4o/chat/completions"
    assert fake.seen[-1].headers["Authorization"].startswith("Bearer tok-")
    async with http.get(f"{gateway.url}/health", params={"model": "wrong-secret"}, headers=ADMIN) as r:
        unhealthy = await r.json()
    assert unhealthy["unhealthy_count"] == 1 and "AADSTS7000215" in unhealthy["unhealthy_endpoints"][0]["error"]


async def test_a_wildcard_names_the_deployment_the_client_asked_for(gateway: Gateway, fake: FakeAzure) -> None:
    before = len(fake.seen)
    async with sdk(gateway) as client:
        for name in ("gpt-4o-mini-eu", "o3-mini"):
            await client.chat.completions.create(model=f"az/{name}", messages=HELLO)  # type: ignore[arg-type]
    assert [s.path for s in fake.seen[before:]] == ["/openai/deployments/gpt-4o-mini-eu/chat/completions",
                                                    "/openai/deployments/o3-mini/chat/completions"]
