"""Cached, cache-written and reasoning tokens priced apart, over HTTP: what a key is charged, what its spend
record says, and what /spend/calculate answers, for the usage shapes real upstreams send."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, spend_record
from tests.test_spend import drop_schema

MASTER = "sk-pricing-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
IN, OUT = 0.001, 0.002
READ, WRITE, WRITE_HOUR, REASONING = 0.0001, 0.00125, 0.002, 0.004
PRICES = {"input_cost_per_token": IN, "output_cost_per_token": OUT}
# claude-sonnet-4-5 in gateway/data/model_prices.json: input, output, cache read, 5-minute and 1-hour cache write.
SONNET = {"in": 3e-06, "out": 1.5e-05, "read": 3e-07, "write": 3.75e-06, "hour": 6e-06}

# What upstreams answer for 1000 prompt tokens (600 of them read from the cache) and 400 completion tokens (150
# of them reasoning), each in its own spelling, and what of that each spelling tells: (read, written, reasoning).
SHAPES: dict[str, tuple[dict[str, Any], tuple[int, int, int]]] = {
    "openai": ({"prompt_tokens": 1000, "completion_tokens": 400, "total_tokens": 1400,
                "prompt_tokens_details": {"cached_tokens": 600, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 150, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
               (600, 0, 150)),
    "azure": ({"completion_tokens": 400, "completion_tokens_details": {
                  "accepted_prediction_tokens": 0, "audio_tokens": 0, "reasoning_tokens": 150,
                  "rejected_prediction_tokens": 0},
               "prompt_tokens": 1000, "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 600},
               "total_tokens": 1400}, (600, 0, 150)),
    "deepseek": ({"prompt_tokens": 1000, "completion_tokens": 400, "total_tokens": 1400,
                  "prompt_tokens_details": {"cached_tokens": 600}, "prompt_cache_hit_tokens": 600,
                  "prompt_cache_miss_tokens": 400, "completion_tokens_details": {"reasoning_tokens": 150}},
                 (600, 0, 150)),
    "deepseek before cached_tokens": ({"prompt_tokens": 1000, "completion_tokens": 400, "total_tokens": 1400,
                                       "prompt_cache_hit_tokens": 600, "prompt_cache_miss_tokens": 400,
                                       "completion_tokens_details": {"reasoning_tokens": 150}}, (600, 0, 150)),
    "vllm": ({"prompt_tokens": 1000, "total_tokens": 1400, "completion_tokens": 400,
              "prompt_tokens_details": {"cached_tokens": 600}}, (600, 0, 0)),
    "vllm without details": ({"prompt_tokens": 1000, "total_tokens": 1400, "completion_tokens": 400,
                              "prompt_tokens_details": None}, (0, 0, 0)),
    "openrouter": ({"prompt_tokens": 1000, "completion_tokens": 400, "total_tokens": 1400,
                    "prompt_tokens_details": {"cached_tokens": 500, "cache_write_tokens": 100, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 150}}, (500, 100, 150)),
}
OPENAI_USAGE = SHAPES["openai"][0]
# Claude relayed in OpenAI's shape by LiteLLM: prompt_tokens counts the cache; 300 of the 500 written last an hour.
CLAUDE_USAGE = {"prompt_tokens": 2030, "completion_tokens": 120, "total_tokens": 2150,
                "prompt_tokens_details": {"cached_tokens": 1500, "text_tokens": 30, "cache_creation_tokens": 500,
                                          "cache_creation_token_details": {"ephemeral_5m_input_tokens": 200,
                                                                           "ephemeral_1h_input_tokens": 300}},
                "completion_tokens_details": {"reasoning_tokens": 0, "text_tokens": 120},
                "cache_creation_input_tokens": 500, "cache_read_input_tokens": 1500}


def itemised(read: int, written: int, reasoning: int, prompt: int = 1000, completion: int = 400,
             read_price: float = READ, write_price: float = WRITE, reasoning_price: float = REASONING) -> float:
    return ((prompt - read - written) * IN + read * read_price + written * write_price
            + (completion - reasoning) * OUT + reasoning * reasoning_price)


def claude_cost(read_price: float = SONNET["read"]) -> float:
    return (30 * SONNET["in"] + 1500 * read_price + 200 * SONNET["write"] + 300 * SONNET["hour"]
            + 120 * SONNET["out"])


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(upstream: FakeUpstream, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "model_list": [
            deployment("itemised", upstream.base_url, **PRICES, cache_read_input_token_cost=READ,
                       cache_creation_input_token_cost=WRITE, cache_creation_input_token_cost_above_1hr=WRITE_HOUR,
                       output_cost_per_reasoning_token=REASONING),
            deployment("base-prices-only", upstream.base_url, **PRICES),
            deployment("read-price-only", upstream.base_url, **PRICES, cache_read_input_token_cost=READ),
            deployment("free-cache-writes", upstream.base_url, **PRICES, cache_creation_input_token_cost=0),
            deployment("priced-in-model-info", upstream.base_url, model_info={
                # YAML reads 1e-4 without a dot as a string; model_info keeps it as written.
                **PRICES, "cache_read_input_token_cost": "1e-4", "output_cost_per_reasoning_token": REASONING}),
            deployment("claude", upstream.base_url, model="openai/claude-sonnet-4-5"),
            deployment("claude-cheaper-reads", upstream.base_url, model="openai/claude-sonnet-4-5",
                       cache_read_input_token_cost=1e-07),
        ],
        "general_settings": {"master_key": MASTER},
    }
    base, schema = None, None
    if request.param == "postgres":
        base = str(request.getfixturevalue("postgres_base"))
        schema = f"gw_pricing_{uuid.uuid4().hex[:12]}"
        config["general_settings"]["database_url"] = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    try:
        with Gateway(config, env={"DATABASE_URL": ""}) as gw:
            yield gw
    finally:
        if base is not None and schema is not None:
            drop_schema(base, schema)


async def new_key(http: aiohttp.ClientSession, gw: Gateway) -> str:
    async with http.post(f"{gw.url}/key/generate", json={}, headers=ADMIN) as r:
        assert r.status == 200
        return str((await r.json())["key"])


async def chat(http: aiohttp.ClientSession, gw: Gateway, key: str, model: str, usage: dict[str, Any],
               **extra: Any) -> tuple[str, float | None]:
    """A request whose upstream answers with `usage`: its id and the cost the gateway reported for it in its
    headers (none for a stream, whose headers go before its usage is known)."""
    request_id = uuid.uuid4().hex
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "fake": {"answer_usage": usage},
            **extra}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {key}", "X-Request-ID": request_id}) as r:
        assert r.status == 200, await r.text()
        answer = await r.read()
        if extra.get("stream") and not extra.get("stream_options"):
            assert b'"usage"' not in answer  # the gateway asked for the usage itself, and kept it to itself
        cost = r.headers.get("x-litellm-response-cost")
        return request_id, float(cost) if cost is not None else None


async def key_spend(http: aiohttp.ClientSession, gw: Gateway, key: str) -> float:
    async with http.get(f"{gw.url}/key/info", params={"key": key}, headers=ADMIN) as r:
        return float((await r.json())["info"]["spend"])


@pytest.mark.parametrize("shape", SHAPES)
async def test_each_upstreams_usage_shape_is_priced_part_by_part(gateway: Gateway, http: aiohttp.ClientSession,
                                                                 shape: str) -> None:
    usage, (read, written, reasoning) = SHAPES[shape]
    key = await new_key(http, gateway)
    request_id, reported = await chat(http, gateway, key, "itemised", usage)
    expected = itemised(read, written, reasoning)
    assert reported == pytest.approx(expected, rel=1e-12)
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(expected, rel=1e-12)
    assert await key_spend(http, gateway, key) == pytest.approx(expected, rel=1e-12)
    assert (record["prompt_tokens"], record["completion_tokens"], record["total_tokens"]) == (1000, 400, 1400)
    logged = record["metadata"]["usage_object"]
    assert logged["prompt_tokens_details"] == {"cached_tokens": read, "cache_creation_tokens": written}
    assert logged["completion_tokens_details"] == {"reasoning_tokens": reasoning}
    assert (logged["cache_read_input_tokens"], logged["cache_creation_input_tokens"]) == (read, written)
    assert record["metadata"]["additional_usage_values"]["cache_read_input_tokens"] == read


@pytest.mark.parametrize("client_asked", [False, True])
async def test_a_streams_usage_is_priced_part_by_part(gateway: Gateway, http: aiohttp.ClientSession,
                                                      client_asked: bool) -> None:
    """The usage event the gateway asked for itself (and took out), or the one the client asked for."""
    key = await new_key(http, gateway)
    extra: dict[str, Any] = {"stream": True}
    if client_asked:
        extra["stream_options"] = {"include_usage": True}
    request_id, _ = await chat(http, gateway, key, "itemised", OPENAI_USAGE, **extra)
    record = await spend_record(http, gateway, request_id, ADMIN)
    expected = itemised(600, 0, 150)
    assert record["spend"] == pytest.approx(expected, rel=1e-12)
    assert await key_spend(http, gateway, key) == pytest.approx(expected, rel=1e-12)
    assert record["metadata"]["usage_object"]["prompt_tokens_details"]["cached_tokens"] == 600
    assert record["metadata"]["usage_object"]["completion_tokens_details"]["reasoning_tokens"] == 150


@pytest.mark.parametrize(("model", "expected"), [
    ("base-prices-only", 1000 * IN + 400 * OUT),  # cached at the input price, reasoning at the output price
    ("read-price-only", itemised(500, 100, 150, write_price=IN, reasoning_price=OUT)),
    ("free-cache-writes", itemised(500, 100, 150, read_price=IN, write_price=0.0, reasoning_price=OUT)),
    ("priced-in-model-info", itemised(500, 100, 150, write_price=IN)),
])
async def test_a_price_left_out_is_that_of_the_tokens_it_is_a_kind_of(
        gateway: Gateway, http: aiohttp.ClientSession, model: str, expected: float) -> None:
    key = await new_key(http, gateway)
    request_id, reported = await chat(http, gateway, key, model, SHAPES["openrouter"][0])
    assert reported == pytest.approx(expected, rel=1e-12)
    assert (await spend_record(http, gateway, request_id, ADMIN))["spend"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("model", "expected"), [("claude", claude_cost()),
                                                 ("claude-cheaper-reads", claude_cost(read_price=1e-07))])
async def test_a_claude_model_is_priced_from_the_bundled_table(gateway: Gateway, http: aiohttp.ClientSession,
                                                               model: str, expected: float) -> None:
    """Reads, five-minute and one-hour writes at the table's prices; a config naming only a cache price
    changes that one on the table's."""
    key = await new_key(http, gateway)
    request_id, reported = await chat(http, gateway, key, model, CLAUDE_USAGE)
    assert reported == pytest.approx(expected, rel=1e-12)
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(expected, rel=1e-12)
    assert record["metadata"]["usage_object"]["cache_creation_input_tokens"] == 500


async def test_spend_calculate_prices_each_part(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async def cost(payload: dict[str, Any]) -> tuple[int, Any]:
        async with http.post(f"{gateway.url}/spend/calculate", json=payload, headers=ADMIN) as r:
            return r.status, await r.json()

    served = {"model": "itemised", "usage": OPENAI_USAGE}
    assert await cost({"completion_response": served}) == (200, {"cost": pytest.approx(itemised(600, 0, 150))})
    # Not served here: the bundled table's price, for Anthropic's own usage shape too.
    anthropic = {"model": "claude-sonnet-4-5", "usage": {
        "input_tokens": 30, "cache_read_input_tokens": 1500, "cache_creation_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 300},
        "output_tokens": 120, "service_tier": "standard"}}
    assert await cost({"completion_response": anthropic}) == (200, {"cost": pytest.approx(claude_cost())})
    status, error = await cost({"completion_response": {"model": "itemised", "usage": {"prompt_tokens": "many"}}})
    assert status == 400 and "usage" in error["error"]["message"]
