"""Vertex AI upstreams over real HTTP: Gemini through Vertex's OpenAI-compatible endpoint and Claude through
rawPredict/streamRawPredict, reached with the OpenAI SDK (and Anthropic's, for Claude), signed with a Google
access token that google-auth gets for a throwaway service account from a fake token endpoint, which verifies
the JWT with the account's public key; spend and budgets from what the upstreams reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from tests.cloud_fakes import LOCATION, PROJECT, FakeGoogle, FakeVertexClaude, FakeVertexGemini
from tests.harness import Gateway, run_cli, spend_record

MASTER = "sk-vertex-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
IN_PRICE, OUT_PRICE = 1e-4, 1e-3
PRICES = {"input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE}
HELLO = [{"role": "user", "content": "Hello there"}]
CLAUDE = "claude-sonnet-4@20250514"
PREFIX = f"/v1/projects/{PROJECT}/locations/{LOCATION}"


@pytest.fixture(scope="module")
def google() -> Iterator[FakeGoogle]:
    fake = FakeGoogle()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def account(google: FakeGoogle) -> dict[str, Any]:
    return google.account(PROJECT)


@pytest.fixture(scope="module")
def gemini(google: FakeGoogle) -> Iterator[FakeVertexGemini]:
    fake = FakeVertexGemini(name="gemini", google=google)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def claude(google: FakeGoogle) -> Iterator[FakeVertexClaude]:
    fake = FakeVertexClaude(name="claude", google=google)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(account: dict[str, Any], gemini: FakeVertexGemini, claude: FakeVertexClaude,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    key_file = tmp_path_factory.mktemp("vertex") / "service-account.json"
    key_file.write_bytes(orjson.dumps(account))
    config = {"model_list": [
        # Inline JSON, project and location in the entry.
        {"model_name": "gemini", "litellm_params": {
            "model": "vertex_ai/gemini-2.0-flash", "api_base": f"http://127.0.0.1:{gemini.port}",
            "vertex_project": PROJECT, "vertex_location": LOCATION,
            "vertex_credentials": orjson.dumps(account).decode(), **PRICES}},
        # GOOGLE_APPLICATION_CREDENTIALS, the project from the key file, the location from VERTEXAI_LOCATION.
        {"model_name": "claude", "litellm_params": {
            "model": f"vertex_ai/{CLAUDE}", "api_base": claude.api_base, **PRICES}},
    ], "general_settings": {"master_key": MASTER}}
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(key_file), "VERTEXAI_LOCATION": LOCATION}
    with Gateway(config, env=env) as gw:
        yield gw


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def sdk(gw: Gateway, key: str = MASTER) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def charged(record: dict[str, Any]) -> float:
    return float(record["prompt_tokens"] * IN_PRICE + record["completion_tokens"] * OUT_PRICE)


async def test_gemini_through_the_openai_compatible_endpoint(
        gateway: Gateway, gemini: FakeVertexGemini, google: FakeGoogle, http: aiohttp.ClientSession) -> None:
    before = len(gemini.seen)
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    async with sdk(gateway) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gemini", messages=HELLO, extra_body={"fake": {"answer_usage": usage}})  # type: ignore[arg-type]
    seen = gemini.seen[before]
    assert seen.path == f"{PREFIX}/endpoints/openapi/chat/completions"
    assert seen.body["model"] == "google/gemini-2.0-flash"
    assert seen.headers["Authorization"] in {f"Bearer {token}" for token in google.issued}
    assert raw.parse().choices[0].message.content == "gemini says hi"
    assert google.refusals == [] and google.assertions
    record = await spend_record(http, gateway, raw.headers["x-request-id"], ADMIN)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (11, 7)
    assert record["spend"] == pytest.approx(11 * IN_PRICE + 7 * OUT_PRICE)


async def test_gemini_stream_is_charged_its_usage(gateway: Gateway, gemini: FakeVertexGemini,
                                                  http: aiohttp.ClientSession) -> None:
    usage = {"prompt_tokens": 13, "completion_tokens": 4, "total_tokens": 17}
    async with sdk(gateway) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gemini", messages=HELLO, stream=True, extra_body={"fake": {"answer_usage": usage}})  # type: ignore[arg-type]
        chunks = [chunk async for chunk in raw.parse()]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("gemini says hi")
    assert all(c.usage is None for c in chunks)  # the gateway's own include_usage is not shown
    record = await spend_record(http, gateway, raw.headers["x-request-id"], ADMIN)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (13, 4)
    assert record["metadata"]["usage_estimated"] is False


async def test_claude_for_openai_clients_through_raw_predict(
        gateway: Gateway, claude: FakeVertexClaude, http: aiohttp.ClientSession) -> None:
    before = len(claude.seen)
    async with sdk(gateway) as client:
        raw = await client.chat.completions.with_raw_response.create(model="claude", messages=HELLO,
                                                                      max_tokens=64)  # type: ignore[arg-type]
        answer = raw.parse()
        stream = await client.chat.completions.create(model="claude", messages=HELLO, max_tokens=64, stream=True,
                                                      stream_options={"include_usage": True})  # type: ignore[arg-type]
        chunks = [chunk async for chunk in stream]
    plain, streamed = claude.seen[before:]
    assert plain.path == f"{PREFIX}/publishers/anthropic/models/{CLAUDE}:rawPredict"
    assert streamed.path == f"{PREFIX}/publishers/anthropic/models/{CLAUDE}:streamRawPredict"
    sent = orjson.loads(plain.raw)
    assert "model" not in sent and sent["anthropic_version"] == "vertex-2023-10-16" and sent["max_tokens"] == 64
    assert answer.choices[0].message.content == "claude says hi" and answer.model == CLAUDE
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "claude says hi"
    upstream_usage = orjson.loads(plain.sent)["usage"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == upstream_usage["output_tokens"]
    record = await spend_record(http, gateway, raw.headers["x-request-id"], ADMIN)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (upstream_usage["input_tokens"],
                                                                       upstream_usage["output_tokens"])
    assert record["spend"] == pytest.approx(charged(record)) and record["metadata"]["usage_estimated"] is False


async def test_claude_for_anthropic_clients_is_relayed_as_vertex_sent_it(
        gateway: Gateway, claude: FakeVertexClaude, http: aiohttp.ClientSession) -> None:
    before = len(claude.seen)
    async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key=MASTER, max_retries=0) as client:
        async with client.messages.stream(model="claude", max_tokens=64, messages=HELLO) as stream:  # type: ignore[arg-type]
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
            request_id = stream.response.headers["x-request-id"]
        counted = await client.messages.count_tokens(model="claude", messages=HELLO)  # type: ignore[arg-type]
    streamed, count = claude.seen[before:]
    assert streamed.path.endswith(f"/{CLAUDE}:streamRawPredict") and streamed.outcome == "completed"
    assert count.path == f"{PREFIX}/publishers/anthropic/models/count-tokens:rawPredict"
    assert orjson.loads(count.raw)["model"] == CLAUDE  # count-tokens names the model in the body
    assert text == "claude says hi" and final.usage.output_tokens > 0
    assert counted.input_tokens == orjson.loads(count.sent)["input_tokens"]
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (final.usage.input_tokens,
                                                                       final.usage.output_tokens)


async def test_one_google_token_serves_every_request_of_both_deployments(
        gateway: Gateway, google: FakeGoogle, gemini: FakeVertexGemini, claude: FakeVertexClaude) -> None:
    async with sdk(gateway) as client:
        await asyncio.gather(*(client.chat.completions.create(model=model, messages=HELLO, max_tokens=16)  # type: ignore[arg-type]
                               for model in ["gemini", "claude"] * 6))
    assert google.issued == ["ya29.fake-1"]  # one service account: one token, fetched once, for all
    used = {s.headers["Authorization"] for s in [*gemini.seen, *claude.seen]}
    assert used == {"Bearer ya29.fake-1"}
    claims = google.assertions[0]
    assert claims["exp"] - claims["iat"] == 3600


async def test_a_google_token_near_expiry_is_used_while_a_new_one_is_fetched() -> None:
    """Tokens issued for 200 s are inside the last five minutes from the start: the first request waits for one;
    the next goes with it at once while google-auth refreshes on its thread, and later ones carry the new one."""
    google = FakeGoogle(token_lifetime=200)
    google.start()
    gemini = FakeVertexGemini(name="gemini-refresh", google=google)
    gemini.start()
    try:
        config = {"model_list": [{"model_name": "gemini", "litellm_params": {
            "model": "vertex_ai/gemini-2.0-flash", "api_base": f"http://127.0.0.1:{gemini.port}",
            "vertex_project": PROJECT, "vertex_location": LOCATION,
            "vertex_credentials": orjson.dumps(google.account(PROJECT)).decode(), **PRICES}}],
            "general_settings": {"master_key": MASTER}}
        with Gateway(config) as gw:
            async with sdk(gw) as client:
                for _ in range(2):
                    await client.chat.completions.create(model="gemini", messages=HELLO)  # type: ignore[arg-type]
                assert [s.headers["Authorization"] for s in gemini.seen] == ["Bearer ya29.fake-1"] * 2
                for _ in range(50):
                    if gemini.seen[-1].headers["Authorization"] != "Bearer ya29.fake-1":
                        break
                    await client.chat.completions.create(model="gemini", messages=HELLO)  # type: ignore[arg-type]
        used = [s.headers["Authorization"].removeprefix("Bearer ") for s in gemini.seen]
        assert used[-1] == "ya29.fake-2"
        assert used == sorted(used, key=google.issued.index)  # never back to an older token
    finally:
        gemini.stop()
        google.stop()


@pytest.mark.parametrize("model", ["gemini", "claude"])
async def test_budgets_hold_what_the_upstream_reported(model: str, gateway: Gateway,
                                                       http: aiohttp.ClientSession) -> None:
    """Requests pass until the key's budget cannot hold one more reservation; its spend is the sum of the
    upstream-reported costs of those that passed."""
    async with http.post(f"{gateway.url}/key/generate", json={"max_budget": 0.08}, headers=ADMIN) as r:
        key = (await r.json())["key"]
    passed: list[str] = []
    async with sdk(gateway, key) as client:
        for _ in range(30):
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=model, messages=HELLO, max_tokens=20)  # type: ignore[arg-type]
            except openai.RateLimitError as refused:
                assert "Budget has been exceeded" in str(refused)
                break
            passed.append(raw.headers["x-request-id"])
        else:
            pytest.fail("the budget never refused a request")
    records = [await spend_record(http, gateway, request_id, ADMIN) for request_id in passed]
    assert len(records) >= 2 and all(record["spend"] > 0 for record in records)
    async with http.get(f"{gateway.url}/key/info", params={"key": key}, headers=ADMIN) as r:
        spend = (await r.json())["info"]["spend"]
    assert spend == pytest.approx(sum(record["spend"] for record in records)) and spend <= 0.08


def test_vertex_settings_that_cannot_work_stop_the_start(account: dict[str, Any], tmp_path: Path) -> None:
    no_project = {key: value for key, value in account.items() if key != "project_id"}
    cases = [
        ({"vertex_credentials": orjson.dumps(no_project).decode()}, "needs its Google Cloud project"),
        ({"vertex_credentials": str(tmp_path / "missing.json")}, "cannot read"),
        ({"vertex_credentials": "{not json"}, "not valid JSON"),
        ({"vertex_credentials": orjson.dumps({"type": "nonsense"}).decode()}, "not usable Google credentials"),
    ]
    for params, words in cases:
        entry = {"model_name": "m", "litellm_params": {"model": "vertex_ai/gemini-2.0-flash", **params}}
        result = run_cli({"model_list": [entry]})
        assert result.returncode != 0 and words in result.stderr, result.stderr


async def test_model_info_shows_no_credentials(gateway: Gateway, account: dict[str, Any],
                                               http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/model/info", headers=ADMIN) as r:
        shown = await r.text()
    assert r.status == 200 and "vertex_ai/gemini-2.0-flash" in shown
    assert "PRIVATE KEY" not in shown and account["private_key_id"] not in shown


async def test_health_probes_reach_both_vertex_endpoints(gateway: Gateway, gemini: FakeVertexGemini,
                                                         claude: FakeVertexClaude,
                                                         http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/health", headers=ADMIN) as r:
        found = await r.json()
    assert found["healthy_count"] == 2 and found["unhealthy_count"] == 0, found
    assert claude.paths[-1].endswith(f"/{CLAUDE}:rawPredict")
    assert gemini.paths[-1].endswith("/endpoints/openapi/chat/completions")


async def test_a_credential_from_credential_list_carries_the_vertex_settings(
        account: dict[str, Any], gemini: FakeVertexGemini) -> None:
    """LiteLLM's credential_list: a model names the credential, and its project, location and service account
    come from there."""
    config = {"credential_list": [{"credential_name": "gcp", "credential_values": {
        "vertex_credentials": orjson.dumps(account).decode(), "vertex_project": PROJECT,
        "vertex_location": LOCATION}}],
        "model_list": [{"model_name": "flash", "litellm_params": {
            "model": "vertex_ai/gemini-2.0-flash", "api_base": f"http://127.0.0.1:{gemini.port}",
            "litellm_credential_name": "gcp"}}]}
    before = len(gemini.seen)
    with Gateway(config) as gw:
        async with sdk(gw, "anything") as client:
            answer = await client.chat.completions.create(model="flash", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "gemini says hi"
    assert gemini.seen[before].path == f"{PREFIX}/endpoints/openapi/chat/completions"
