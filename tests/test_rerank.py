"""/rerank, /v1/rerank and /v2/rerank to Cohere, Jina and vLLM-style upstreams, over real HTTP against a
gateway process and a fake upstream on loopback answering in each one's shape."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.harness import Gateway, free_port, new_virtual_key, spend_record
from tests.media_fakes import MediaUpstream, rerank_tokens

MASTER = "sk-rerank-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PREFIX = "/olla/litellm"
COHERE_PER_QUERY = 0.002  # rerank-v3.5 in the bundled price table
JINA_PER_TOKEN = 5e-08  # jina-reranker-v2-base-multilingual in the bundled price table
VLLM_PER_TOKEN = 1e-06
# The example of LiteLLM's /rerank docs (Cohere's own).
QUERY = "What is the capital of the United States?"
DOCUMENTS = [
    "Carson City is the capital city of the American state of Nevada.",
    "The Commonwealth of the Northern Mariana Islands is a group of islands in the Pacific Ocean. "
    "Its capital is Saipan.",
    "Washington, D.C. (also known as simply Washington or D.C., and officially as the District of Columbia) "
    "is the capital of the United States. It is a federal district.",
    "Capital punishment (the death penalty) has existed in the United States since beforethe United States "
    "was a country. As of 2017, capital punishment is legal in 30 of the 50 states.",
]


def entry(name: str, model: str, api_base: str, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": model, "api_base": api_base,
                                                    "api_key": "sk-upstream-secret", **params},
            "model_info": {"mode": "rerank"}}


@pytest.fixture(scope="module")
def media() -> Iterator[MediaUpstream]:
    fake = MediaUpstream("rerank").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(media: MediaUpstream) -> Iterator[Gateway]:
    config = {
        "model_list": [
            entry("cohere-rerank", "cohere/rerank-v3.5", media.root_url),
            entry("jina-rerank", "jina_ai/jina-reranker-v2-base-multilingual", media.root_url),
            entry("bge", "hosted_vllm/BAAI/bge-reranker-v2-m3", media.base_url, input_cost_per_token=VLLM_PER_TOKEN),
            entry("down", "hosted_vllm/BAAI/bge-reranker-v2-m3", f"http://127.0.0.1:{free_port()}/v1"),
        ],
        "general_settings": {"master_key": MASTER},
        "gateway_settings": {"path_prefixes": [PREFIX]},
    }
    with Gateway(config) as gw:
        yield gw


async def rerank(http: aiohttp.ClientSession, url: str, payload: dict[str, Any], key: str = MASTER,
                 request_id: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": request_id or uuid.uuid4().hex}
    async with http.post(url, json=payload, headers=headers) as r:
        return r.status, await r.json()


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    return await new_virtual_key(http, gw, ADMIN, **fields)


async def test_cohere_v1_is_charged_per_search_unit(gateway: Gateway, media: MediaUpstream,
                                                   http: aiohttp.ClientSession) -> None:
    """150 documents are two of Cohere's search units (one query, up to 100 documents each)."""
    request_id = uuid.uuid4().hex
    documents = [f"document {i} about the capital" for i in range(150)]
    status, body = await rerank(http, f"{gateway.url}/v1/rerank",
                                {"model": "cohere-rerank", "query": "the capital", "documents": documents,
                                 "top_n": 5}, request_id=request_id)
    assert status == 200, body
    assert len(body["results"]) == 5 and body["meta"]["billed_units"] == {"search_units": 2}
    assert body["meta"]["api_version"] == {"version": "1"}
    call = media.calls[-1]
    assert call.path == "/v1/rerank" and call.body["model"] == "rerank-v3.5" and call.body["top_n"] == 5
    assert call.headers["Authorization"] == "Bearer sk-upstream-secret"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["call_type"] == "rerank" and record["spend"] == pytest.approx(2 * COHERE_PER_QUERY, rel=1e-9)


@pytest.mark.parametrize("base", ["", PREFIX])
async def test_v2_rerank_goes_to_cohere_v2(gateway: Gateway, media: MediaUpstream, http: aiohttp.ClientSession,
                                           base: str) -> None:
    request_id = uuid.uuid4().hex
    status, body = await rerank(http, f"{gateway.url}{base}/v2/rerank",
                                {"model": "cohere-rerank", "query": QUERY, "documents": DOCUMENTS,
                                 "max_tokens_per_doc": 512}, request_id=request_id)
    assert status == 200 and body["meta"]["api_version"] == {"version": "2"}
    assert body["results"][0]["index"] == 2
    assert media.calls[-1].path == "/v2/rerank" and media.calls[-1].body["max_tokens_per_doc"] == 512
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(COHERE_PER_QUERY, rel=1e-9)


async def test_litellm_docs_request_to_jina(gateway: Gateway, media: MediaUpstream,
                                            http: aiohttp.ClientSession) -> None:
    """LiteLLM's /rerank example, at the prefix-less route; Jina counts tokens."""
    request_id = uuid.uuid4().hex
    status, body = await rerank(http, f"{gateway.url}/rerank",
                                {"model": "jina-rerank", "query": QUERY, "documents": DOCUMENTS, "top_n": 3,
                                 "return_documents": True}, request_id=request_id)
    assert status == 200, body
    assert [r["document"]["text"] for r in body["results"]][0] == DOCUMENTS[2] and len(body["results"]) == 3
    tokens = rerank_tokens(QUERY, DOCUMENTS)
    assert body["usage"] == {"total_tokens": tokens}
    call = media.calls[-1]
    assert call.path == "/v1/rerank" and call.body["model"] == "jina-reranker-v2-base-multilingual"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["total_tokens"] == tokens
    assert record["spend"] == pytest.approx(tokens * JINA_PER_TOKEN, rel=1e-9)


async def test_vllm_rerank_under_a_prefix(gateway: Gateway, media: MediaUpstream,
                                          http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    status, body = await rerank(http, f"{gateway.url}{PREFIX}/v1/rerank",
                                {"model": "bge", "query": QUERY, "documents": DOCUMENTS}, request_id=request_id)
    tokens = rerank_tokens(QUERY, DOCUMENTS)
    assert status == 200 and body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert body["id"].startswith("rerank-") and body["model"] == "BAAI/bge-reranker-v2-m3"
    assert media.calls[-1].path == "/v1/rerank"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(tokens * VLLM_PER_TOKEN, rel=1e-9)


@pytest.mark.parametrize(("payload", "param"), [
    ({"model": "bge", "documents": DOCUMENTS}, "query"),
    ({"model": "bge", "query": "", "documents": DOCUMENTS}, "query"),
    ({"model": "bge", "query": QUERY}, "documents"),
    ({"model": "bge", "query": QUERY, "documents": []}, "documents"),
    ({"model": "bge", "query": QUERY, "documents": DOCUMENTS, "top_n": 0}, "top_n"),
    ({"query": QUERY, "documents": DOCUMENTS}, "model"),
])
async def test_bad_rerank_requests(gateway: Gateway, http: aiohttp.ClientSession, payload: dict[str, Any],
                                   param: str) -> None:
    status, body = await rerank(http, f"{gateway.url}/v1/rerank", payload)
    assert status == 400 and body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"


async def test_a_budget_below_one_search_unit_is_refused(gateway: Gateway, media: MediaUpstream,
                                                         http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, max_budget=COHERE_PER_QUERY / 2)
    before = len(media.calls)
    status, body = await rerank(http, f"{gateway.url}/v1/rerank",
                                {"model": "cohere-rerank", "query": QUERY, "documents": DOCUMENTS}, key)
    assert status >= 400 and body["error"]["type"] == "budget_exceeded", body
    assert len(media.calls) == before


async def test_rate_limits_and_model_access_apply(gateway: Gateway, media: MediaUpstream,
                                                  http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, rpm_limit=1, models=["bge"])
    payload = {"model": "bge", "query": QUERY, "documents": DOCUMENTS}
    assert (await rerank(http, f"{gateway.url}/v1/rerank", payload, key))[0] == 200
    status, body = await rerank(http, f"{gateway.url}/v1/rerank", payload, key)
    assert status == 429 and body["error"]["type"] == "rate_limit_error"
    other = await new_key(http, gateway, models=["bge"])
    status, body = await rerank(http, f"{gateway.url}/v1/rerank", {**payload, "model": "cohere-rerank"}, other)
    assert status == 401 and body["error"]["type"] == "key_model_access_denied"


async def test_a_reranker_does_not_speak(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, body = await rerank(http, f"{gateway.url}/v1/audio/speech",
                                {"model": "cohere-rerank", "input": "hello", "voice": "alloy"})
    assert status == 400 and "serve /rerank only" in body["error"]["message"]


async def test_an_unreachable_upstream_is_an_openai_error(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    status, body = await rerank(http, f"{gateway.url}/v1/rerank",
                                {"model": "down", "query": QUERY, "documents": DOCUMENTS}, request_id=request_id)
    assert status == 502 and body["error"]["type"] == "api_connection_error"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["status"] == "failure" and record["spend"] == 0


async def test_health_probes_rerankers_with_a_rerank(gateway: Gateway, media: MediaUpstream,
                                                     http: aiohttp.ClientSession) -> None:
    for group, path in (("cohere-rerank", "/v1/rerank"), ("jina-rerank", "/v1/rerank"), ("bge", "/v1/rerank")):
        async with http.get(f"{gateway.url}/health", params={"model": group}, headers=ADMIN) as r:
            body = await r.json()
        assert r.status == 200 and len(body["healthy_endpoints"]) == 1 and body["unhealthy_endpoints"] == [], body
        assert media.calls[-1].path == path and media.calls[-1].body["documents"] == ["ping"]


def test_nothing_above_went_to_the_log_as_a_traceback(gateway: Gateway) -> None:
    assert "Traceback" not in gateway.log()
