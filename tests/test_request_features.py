"""/moderations, /images/generations, per-deployment num_retries, comma-separated batch completions and the
read-only settings endpoints, over real HTTP against a gateway process and fake upstreams."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, free_port, new_virtual_key, spend_record

MASTER = "sk-features-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PREFIX = "/olla/litellm"
IMAGE_PRICE = 0.04
PRICE_IN, PRICE_OUT = 0.001, 0.002
CHAT = [{"role": "user", "content": "hello"}]
# LiteLLM's per-pixel prices (gateway/data/model_prices.json), by quality and size.
DALL_E_3_HD_TALL = 6.539e-08
DALL_E_3_STANDARD_SQUARE = 3.81469e-08
DALL_E_2_SMALL = 2.4414e-07
DALL_E_2_LARGE = 1.9e-08


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, upstream_b: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "model_list": [
            deployment("chat", upstream.base_url, input_cost_per_token=PRICE_IN, output_cost_per_token=PRICE_OUT),
            deployment("other", upstream_b.base_url, input_cost_per_token=PRICE_IN, output_cost_per_token=PRICE_OUT),
            deployment("mod", upstream.base_url, model_info={"mode": "moderation"}),
            deployment("img", upstream.base_url, output_cost_per_image=IMAGE_PRICE,
                       model_info={"mode": "image_generation"}),
            deployment("dalle", upstream.base_url, model="openai/dall-e-3", model_info={"mode": "image_generation"}),
            deployment("dalle-2", upstream.base_url, model="openai/dall-e-2", model_info={"mode": "image_generation"}),
            deployment("dalle-priced", upstream.base_url, model="openai/dall-e-3",
                       output_cost_per_image=IMAGE_PRICE * 10, model_info={"mode": "image_generation"}),
            deployment("img-tokens", upstream.base_url, input_cost_per_token=PRICE_IN,
                       output_cost_per_token=PRICE_OUT),
            deployment("flaky", upstream.base_url, num_retries=2),
            deployment("steady", upstream.base_url),
            deployment("down", f"http://127.0.0.1:{free_port()}/v1"),
            {"model_name": "echo", "litellm_params": {"model": "mock/echo"}},
        ],
        "router_settings": {"num_retries": 0, "retry_after": 0.01, "allowed_fails": 100},
        "general_settings": {"master_key": MASTER},
        "litellm_settings": {"public_model_groups": ["chat", "img", "nowhere"]},
        "gateway_settings": {"path_prefixes": [PREFIX]},
    }
    with Gateway(config) as gw:
        yield gw


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    return await new_virtual_key(http, gw, ADMIN, **fields)


async def post(http: aiohttp.ClientSession, url: str, payload: Any, key: str,
               request_id: str | None = None) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": request_id or uuid.uuid4().hex}
    async with http.post(url, data=orjson.dumps(payload), headers=headers) as r:
        return r.status, orjson.loads(await r.read()), r.headers


# /moderations and /images/generations


@pytest.mark.parametrize("path", ["/v1/moderations", "/moderations", f"{PREFIX}/v1/moderations"])
async def test_moderations_are_relayed_untouched(gateway: Gateway, upstream: FakeUpstream,
                                                 http: aiohttp.ClientSession, path: str) -> None:
    key = await new_key(http, gateway, models=["mod"])
    request_id = uuid.uuid4().hex
    status, body, headers = await post(http, f"{gateway.url}{path}", {"model": "mod", "input": ["hi", "kill"]},
                                       key, request_id)
    assert status == 200, body
    assert upstream.seen[-1].path == "/v1/moderations" and upstream.seen[-1].body["model"] == "mod-upstream"
    assert body["id"] == "modr-alpha" and [r["flagged"] for r in body["results"]] == [False, True]
    assert "category_applied_input_types" in body["results"][0]
    assert headers["x-litellm-model-group"] == "mod"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["call_type"] == "moderations" and record["spend"] == 0 and record["model_group"] == "mod"
    assert record["status"] == "success"


async def test_moderations_without_a_model_go_to_the_moderation_group(gateway: Gateway, upstream: FakeUpstream,
                                                                     http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, f"{gateway.url}/moderations", {"input": "hello"}, MASTER)
    assert status == 200, body
    assert upstream.seen[-1].body["model"] == "mod-upstream"


async def test_images_are_priced_per_image(gateway: Gateway, upstream: FakeUpstream,
                                           http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway)
    request_id = uuid.uuid4().hex
    status, body, headers = await post(http, f"{gateway.url}{PREFIX}/images/generations",
                                       {"model": "img", "prompt": "a red cat", "n": 2, "size": "1024x1024"},
                                       key, request_id)
    assert status == 200, body
    assert upstream.seen[-1].path == "/v1/images/generations" and upstream.seen[-1].body["size"] == "1024x1024"
    assert [d["url"] for d in body["data"]] == ["https://images.invalid/alpha/0.png",
                                                "https://images.invalid/alpha/1.png"]
    assert float(headers["x-litellm-response-cost"]) == pytest.approx(2 * IMAGE_PRICE)
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(2 * IMAGE_PRICE) and record["call_type"] == "images/generations"
    assert record["total_tokens"] == 0 and record["metadata"]["usage_estimated"] is False


async def test_images_of_a_known_model_are_priced_from_the_bundled_table(gateway: Gateway, upstream: FakeUpstream,
                                                                         http: aiohttp.ClientSession) -> None:
    """dall-e-3 with no price in the config and no size or quality asked: 1024x1024 standard, about $0.04."""
    request_id = uuid.uuid4().hex
    status, body, _ = await post(http, f"{gateway.url}/v1/images/generations",
                                 {"model": "dalle", "prompt": "a red cat", "n": 2}, MASTER, request_id)
    assert status == 200, body
    assert upstream.seen[-1].body["model"] == "dall-e-3"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(2 * 1024 * 1024 * DALL_E_3_STANDARD_SQUARE, rel=1e-9)
    assert record["call_type"] == "images/generations"


@pytest.mark.parametrize(("model", "asked", "expected"), [
    ("dalle", {"n": 1, "size": "1024x1792", "quality": "hd"}, 1024 * 1792 * DALL_E_3_HD_TALL),
    ("dalle", {"size": "1792x1024", "quality": "hd"}, 1792 * 1024 * DALL_E_3_HD_TALL),
    ("dalle", {"quality": "standard"}, 1024 * 1024 * DALL_E_3_STANDARD_SQUARE),
    ("dalle-2", {"n": 3, "size": "256x256"}, 3 * 256 * 256 * DALL_E_2_SMALL),
    ("dalle-2", {"n": 2}, 2 * 1024 * 1024 * DALL_E_2_LARGE),
    # dall-e-2 has one quality: LiteLLM's key without it is the one that matches.
    ("dalle-2", {"size": "256x256", "quality": "hd"}, 256 * 256 * DALL_E_2_SMALL),
    # No entry for the size: the model's one-image price, the plain entry LiteLLM's lookup ends on.
    ("dalle", {"n": 2, "size": "512x512"}, 2 * 0.04),
    ("dalle", {"size": "auto"}, 0.04),
    # A price in the config wins over the table's, whatever the size and quality.
    ("dalle-priced", {"n": 2, "size": "1024x1792", "quality": "hd"}, 2 * IMAGE_PRICE * 10),
], ids=["dall-e-3-hd-1024x1792", "dall-e-3-hd-1792x1024", "dall-e-3-default-size", "dall-e-2-256x256-n3",
        "dall-e-2-default-size", "dall-e-2-quality-ignored", "dall-e-3-unknown-size", "dall-e-3-size-auto",
        "config-price-wins"])
async def test_images_are_priced_by_size_and_quality(gateway: Gateway, upstream: FakeUpstream,
                                                     http: aiohttp.ClientSession, model: str,
                                                     asked: dict[str, Any], expected: float) -> None:
    request_id = uuid.uuid4().hex
    status, body, headers = await post(http, f"{gateway.url}/v1/images/generations",
                                       {"model": model, "prompt": "a red cat", **asked}, MASTER, request_id)
    assert status == 200, body
    assert {k: upstream.seen[-1].body.get(k) for k in asked} == asked
    assert float(headers["x-litellm-response-cost"]) == pytest.approx(expected, rel=1e-9)
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(expected, rel=1e-9)


async def test_image_usage_from_the_answer_is_priced(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    status, _, _ = await post(http, f"{gateway.url}/v1/images/generations",
                              {"model": "img-tokens", "prompt": "a cat", "fake": {"usage": True}}, MASTER, request_id)
    assert status == 200
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (10, 100)
    assert record["spend"] == pytest.approx(10 * PRICE_IN + 100 * PRICE_OUT)


async def test_mock_provider_answers_moderations_and_images(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, f"{gateway.url}/v1/moderations", {"model": "echo", "input": ["a", "b"]},
                                 MASTER)
    assert status == 200 and [r["flagged"] for r in body["results"]] == [False, False]
    status, body, _ = await post(http, f"{gateway.url}/v1/images/generations",
                                 {"model": "echo", "prompt": "x", "response_format": "b64_json"}, MASTER)
    assert status == 200 and body["data"][0]["b64_json"]


@pytest.mark.parametrize(("path", "payload", "param"), [
    ("/v1/images/generations", {"model": "img"}, "prompt"),
    ("/v1/images/generations", {"model": "img", "prompt": ["a"]}, "prompt"),
    ("/v1/images/generations", {"model": "img", "prompt": "a", "n": 0}, "n"),
    ("/v1/images/generations", {"model": "img", "prompt": "a", "n": "2"}, "n"),
    ("/v1/moderations", {"model": "mod"}, "input"),
    ("/v1/moderations", {"model": "mod", "input": []}, "input"),
])
async def test_bad_bodies_are_refused(gateway: Gateway, upstream: FakeUpstream, http: aiohttp.ClientSession,
                                      path: str, payload: dict[str, Any], param: str) -> None:
    before = len(upstream.seen)
    status, body, _ = await post(http, f"{gateway.url}{path}", payload, MASTER)
    assert status == 400 and body["error"]["param"] == param, body
    assert len(upstream.seen) == before


async def test_malformed_body_and_unknown_model(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway.url}/v1/images/generations", data=b"{not json", headers=ADMIN) as r:
        assert r.status == 400 and "Invalid JSON" in (await r.json())["error"]["message"]
    status, body, _ = await post(http, f"{gateway.url}/v1/moderations", {"model": "nope", "input": "a"}, MASTER)
    assert status == 404 and body["error"]["code"] == "model_not_found"


async def test_model_access_applies_to_images(gateway: Gateway, upstream: FakeUpstream,
                                              http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, models=["chat"])
    before = len(upstream.seen)
    status, body, _ = await post(http, f"{gateway.url}/v1/images/generations", {"model": "img", "prompt": "a"}, key)
    assert status == 401 and body["error"]["type"] == "key_model_access_denied"
    assert len(upstream.seen) == before


async def test_image_budget_counts_the_images(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, max_budget=IMAGE_PRICE * 3)
    status, body, _ = await post(http, f"{gateway.url}/v1/images/generations",
                                 {"model": "img", "prompt": "a", "n": 4}, key)
    assert status == 429 and body["error"]["type"] == "budget_exceeded", body
    status, _, _ = await post(http, f"{gateway.url}/v1/images/generations", {"model": "img", "prompt": "a", "n": 3},
                              key)
    assert status == 200


async def test_image_budget_holds_the_price_of_the_size_asked(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    """$0.10 covers a standard 1024x1024 dall-e-3 image ($0.04) but not an hd 1024x1792 one ($0.12)."""
    key = await new_key(http, gateway, max_budget=0.1)
    tall = {"model": "dalle", "prompt": "a", "size": "1024x1792", "quality": "hd"}
    status, body, _ = await post(http, f"{gateway.url}/v1/images/generations", tall, key)
    assert status == 429 and body["error"]["type"] == "budget_exceeded", body
    status, body, _ = await post(http, f"{gateway.url}/v1/images/generations", {"model": "dalle", "prompt": "a"}, key)
    assert status == 200, body


# num_retries


async def test_deployment_num_retries(gateway: Gateway, upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    failing = {"fake": {"status": 500, "body": {"error": {"message": "boom"}}}}
    upstream.reset()
    status, _, headers = await post(http, f"{gateway.url}/v1/chat/completions",
                                    {"model": "flaky", "messages": CHAT, **failing}, MASTER)
    assert status == 500
    assert len(upstream.seen) == 3
    assert headers["x-litellm-max-retries"] == "2" and headers["x-litellm-attempted-retries"] == "2"
    upstream.reset()
    status, _, headers = await post(http, f"{gateway.url}/v1/chat/completions",
                                    {"model": "steady", "messages": CHAT, **failing}, MASTER)
    assert status == 500 and len(upstream.seen) == 1
    assert headers["x-litellm-max-retries"] == "0" and headers["x-litellm-attempted-retries"] == "0"
    status, _, headers = await post(http, f"{gateway.url}/v1/chat/completions", {"model": "flaky", "messages": CHAT},
                                    MASTER)
    assert status == 200 and headers["x-litellm-max-retries"] == "2"
    assert headers["x-litellm-attempted-retries"] == "0"


# comma-separated models


async def test_batch_answers_each_model_and_settles_each(gateway: Gateway, upstream: FakeUpstream,
                                                         upstream_b: FakeUpstream,
                                                         http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, models=["chat", "other"])
    request_id = uuid.uuid4().hex
    status, body, headers = await post(http, f"{gateway.url}/v1/chat/completions",
                                       {"model": "chat, other", "messages": CHAT}, key, request_id)
    assert status == 200, body
    assert [answer["id"] for answer in body] == ["chatcmpl-alpha", "chatcmpl-beta"]
    assert upstream.seen[-1].body["model"] == "chat-upstream" and upstream_b.seen[-1].body["model"] == "other-upstream"
    assert headers["X-Request-ID"] == request_id
    first = await spend_record(http, gateway, f"{request_id}-0", ADMIN)
    second = await spend_record(http, gateway, f"{request_id}-1", ADMIN)
    assert (first["model_group"], second["model_group"]) == ("chat", "other")
    each = 5 * PRICE_IN + 3 * PRICE_OUT
    assert first["spend"] == pytest.approx(each) and second["spend"] == pytest.approx(each)
    async with http.get(f"{gateway.url}/key/info", params={"key": key}, headers=ADMIN) as r:
        assert (await r.json())["info"]["spend"] == pytest.approx(2 * each)


async def test_batch_with_a_model_the_key_may_not_use_sends_nothing(gateway: Gateway, upstream: FakeUpstream,
                                                                     upstream_b: FakeUpstream,
                                                                     http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, models=["chat"])
    before = (len(upstream.seen), len(upstream_b.seen))
    status, body, _ = await post(http, f"{gateway.url}/v1/chat/completions",
                                 {"model": "chat,other", "messages": CHAT}, key)
    assert status == 401 and "other" in body["error"]["message"]
    assert (len(upstream.seen), len(upstream_b.seen)) == before


@pytest.mark.parametrize(("model", "extra", "status", "param"), [
    ("chat,nope", {}, 404, "model"),
    ("chat,", {}, 400, "model"),
    ("chat,other", {"stream": True}, 400, "stream"),
    ("chat,other", {"fastest_response": "yes"}, 400, "fastest_response"),
])
async def test_batch_bad_input(gateway: Gateway, upstream: FakeUpstream, http: aiohttp.ClientSession, model: str,
                               extra: dict[str, Any], status: int, param: str) -> None:
    before = len(upstream.seen)
    got, body, _ = await post(http, f"{gateway.url}/v1/chat/completions",
                              {"model": model, "messages": CHAT, **extra}, MASTER)
    assert got == status and body["error"]["param"] == param, body
    assert len(upstream.seen) == before


async def test_batch_failure_stands_in_the_list(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, f"{gateway.url}/chat/completions", {"model": "chat,down", "messages": CHAT},
                                 MASTER)
    assert status == 200
    assert body[0]["id"] == "chatcmpl-alpha" and body[1]["error"]["type"] == "api_connection_error"
    status, body, _ = await post(http, f"{gateway.url}/chat/completions", {"model": "down,down", "messages": CHAT},
                                 MASTER)
    assert status == 502 and body["error"]["type"] == "api_connection_error"


async def test_batch_fastest_response(gateway: Gateway, upstream_b: FakeUpstream,
                                      http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    status, body, headers = await post(http, f"{gateway.url}/v1/chat/completions",
                                       {"model": "down,other", "messages": CHAT, "fastest_response": True},
                                       MASTER, request_id)
    assert status == 200 and body["id"] == "chatcmpl-beta"
    assert headers["x-litellm-fastest_response_batch_completion"] == "True"
    assert "fastest_response" not in upstream_b.seen[-1].body
    record = await spend_record(http, gateway, f"{request_id}-1", ADMIN)
    assert record["status"] == "success"


# settings endpoints


async def test_router_settings_for_admins_only(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}{PREFIX}/router/settings", headers=ADMIN) as r:
        assert r.status == 200
        settings = await r.json()
    assert settings["current_values"]["num_retries"] == 0
    assert settings["current_values"]["routing_strategy"] == "simple-shuffle"
    fields = {f["field_name"]: f for f in settings["fields"]}
    assert "least-busy" in fields["routing_strategy"]["options"]
    assert fields["retry_after"]["field_value"] == 0.01
    assert set(fields["num_retries"]) >= {"field_type", "field_value", "field_description", "field_default",
                                          "ui_field_name", "options", "link"}
    assert "simple-shuffle" in settings["routing_strategy_descriptions"]
    key = await new_key(http, gateway)
    async with http.get(f"{gateway.url}/router/settings", headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status == 403
    async with http.get(f"{gateway.url}/router/settings") as r:
        assert r.status == 401


async def test_public_cost_map_needs_no_key(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/public/litellm_model_cost_map") as r:
        assert r.status == 200
        costs = await r.json()
    assert costs["gpt-4o"]["litellm_provider"] == "openai" and costs["gpt-4o"]["input_cost_per_token"] > 0
    assert costs["text-embedding-3-small"]["mode"] == "embedding"


async def test_public_model_hub(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, models=["other"])
    async with http.get(f"{gateway.url}/public/model_hub", headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status == 200
        hub = await r.json()
    assert [g["model_group"] for g in hub] == ["chat", "img"]
    assert hub[1]["mode"] == "image_generation" and all(g["is_public_model_group"] for g in hub)
