"""The forwarding path and every error it can answer, over real HTTP against a gateway process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, free_port

CHAT = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "model_list": [
            deployment("chat", upstream.base_url),
            deployment("embed", upstream.base_url, model_info={"mode": "embedding"}),
            deployment("instruct", upstream.base_url, model_info={"mode": "completion"}),
            deployment("down", f"http://127.0.0.1:{free_port()}/v1"),
            deployment("slow", upstream.base_url, timeout=0.5),
            {"model_name": "fixed", "litellm_params": {"model": "mock/fixed", "mock_response": "fixed answer"}},
        ],
        "general_settings": {"max_request_size_mb": 0.01},
    }
    with Gateway(config) as gw:
        yield gw


def envelope(body: Any) -> dict[str, Any]:
    """Assert the OpenAI error shape and return the inner object."""
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["code"], str)
    return error


async def post(http: aiohttp.ClientSession, url: str, payload: Any = None, *, data: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    raw = data if data is not None else orjson.dumps(payload)
    async with http.post(url, data=raw, headers={"Content-Type": "application/json", **(headers or {})}) as r:
        text = await r.read()
        return r.status, orjson.loads(text), r.headers


async def test_chat_is_forwarded_with_the_deployment_model_and_key(gateway: Gateway, upstream: FakeUpstream,
                                                                   http: aiohttp.ClientSession) -> None:
    upstream.reset()
    sent = {"model": "chat", **CHAT, "temperature": 0.2, "tools": [{"type": "function", "function": {"name": "f"}}],
            "custom": {"nested": [1, 2, {"x": None}]}, "fake": {}}
    status, body, headers = await post(http, f"{gateway.url}/v1/chat/completions", sent,
                                       headers={"Authorization": "Bearer sk-client-secret", "x-api-key": "sk-other",
                                                "api-key": "sk-azure-style", "X-Request-ID": "req-123"})
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "alpha says hi"
    seen = upstream.seen[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.body == {**sent, "model": "chat-upstream"}
    assert seen.headers["Authorization"] == "Bearer sk-upstream-secret"
    leaked = [v for v in seen.headers.values() if "sk-client-secret" in v or "sk-other" in v or "sk-azure" in v]
    assert leaked == []
    assert headers["X-Request-ID"] == "req-123"
    assert headers["x-litellm-call-id"] == "req-123"
    assert headers["x-litellm-model-group"] == "chat"
    assert headers["x-litellm-model-api-base"] == upstream.base_url
    assert len(headers["x-litellm-model-id"]) == 64
    assert float(headers["x-litellm-response-duration-ms"]) > 0


async def test_non_streaming_body_is_relayed_as_the_upstream_wrote_it(gateway: Gateway, upstream: FakeUpstream,
                                                                      http: aiohttp.ClientSession) -> None:
    payload = orjson.dumps({"model": "chat-upstream", **CHAT})
    async with http.post(f"{upstream.base_url}/chat/completions", data=payload) as direct:
        expected = await direct.read()
    async with http.post(f"{gateway.url}/v1/chat/completions", data=orjson.dumps({"model": "chat", **CHAT})) as r:
        assert await r.read() == expected
        assert r.content_type == "application/json"


@pytest.mark.parametrize("path", ["/v1/completions", "/completions"])
async def test_completions(gateway: Gateway, upstream: FakeUpstream, http: aiohttp.ClientSession, path: str) -> None:
    status, body, _ = await post(http, gateway.url + path, {"model": "instruct", "prompt": "once", "max_tokens": 3})
    assert status == 200
    assert body["choices"][0]["text"] == "alpha completes"
    assert upstream.seen[-1].path == "/v1/completions"
    assert upstream.seen[-1].body == {"model": "instruct-upstream", "prompt": "once", "max_tokens": 3}


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embeddings"])
async def test_embeddings(gateway: Gateway, upstream: FakeUpstream, http: aiohttp.ClientSession, path: str) -> None:
    status, body, _ = await post(http, gateway.url + path, {"model": "embed", "input": ["a", "b"]})
    assert status == 200
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert upstream.seen[-1].path == "/v1/embeddings"
    assert upstream.seen[-1].body["model"] == "embed-upstream"


async def test_chat_without_v1(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, f"{gateway.url}/chat/completions", {"model": "chat", **CHAT})
    assert status == 200 and body["object"] == "chat.completion"


async def test_mock_provider_answers_without_upstream(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, f"{gateway.url}/v1/chat/completions", {"model": "fixed", **CHAT})
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "fixed answer"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


@pytest.mark.parametrize("base", ["/v1", ""])
async def test_model_listing(gateway: Gateway, http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{gateway.url}{base}/models") as r:
        body = await r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["chat", "embed", "instruct", "down", "slow", "fixed"]
    assert all(m["object"] == "model" for m in body["data"])
    async with http.get(f"{gateway.url}{base}/models/chat") as r:
        assert r.status == 200
        assert (await r.json())["id"] == "chat"
    async with http.get(f"{gateway.url}{base}/models/no-such-model") as r:
        assert r.status == 404
        error = envelope(await r.json())
        assert "no-such-model" in error["message"] and "/v1/models" in error["message"]


async def test_model_info_never_shows_keys(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/model/info") as r:
        text = await r.text()
        body = orjson.loads(text)
    assert "sk-upstream-secret" not in text
    by_name = {d["model_name"]: d for d in body["data"]}
    assert by_name["chat"]["litellm_params"]["model"] == "openai/chat-upstream"
    assert by_name["embed"]["model_info"]["mode"] == "embedding"
    assert by_name["chat"]["model_info"]["id"]
    assert "api_key" not in by_name["chat"]["litellm_params"]


async def test_liveness_and_readiness(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    for path in ("/health/liveliness", "/health/liveness"):
        async with http.get(gateway.url + path) as r:
            assert r.status == 200 and await r.json() == "I'm alive!"
    async with http.get(f"{gateway.url}/health/readiness") as r:
        assert r.status == 200
        body = await r.json()
        assert body["status"] == "healthy" and body["db"] == "connected"


async def test_health_probes_every_deployment(gateway: Gateway, upstream: FakeUpstream,
                                              http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/health") as r:
        text = await r.text()
        body = orjson.loads(text)
    assert "sk-upstream-secret" not in text
    healthy = {e["model_name"] for e in body["healthy_endpoints"]}
    unhealthy = {e["model_name"]: e for e in body["unhealthy_endpoints"]}
    assert healthy == {"chat", "embed", "instruct", "slow", "fixed"}
    assert set(unhealthy) == {"down"} and "unreachable" in unhealthy["down"]["error"]
    assert body["healthy_count"] == 5 and body["unhealthy_count"] == 1
    probes = {s.path for s in upstream.seen[-5:]}
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/completions"} <= probes
    async with http.get(f"{gateway.url}/health", params={"model": "embed"}) as r:
        assert [e["model_name"] for e in (await r.json())["healthy_endpoints"]] == ["embed"]


@pytest.mark.parametrize(
    ("raw", "param", "words"),
    [
        (b"{not json", "request_body", "Invalid JSON"),
        (b"", None, "empty"),
        (b"[1, 2]", None, "JSON object"),
        (orjson.dumps(CHAT), "model", "model"),
        (orjson.dumps({"model": 7, **CHAT}), "model", "string"),
        (orjson.dumps({"model": "chat"}), "messages", "messages"),
        (orjson.dumps({"model": "chat", "messages": "hi"}), "messages", "array"),
        (orjson.dumps({"model": "chat", "messages": []}), "messages", "array"),
        (orjson.dumps({"model": "chat", "messages": [{"content": "no role"}]}), "messages[0]", "role"),
        (orjson.dumps({"model": "chat", **CHAT, "stream": "yes"}), "stream", "boolean"),
        (orjson.dumps({"model": "chat", **CHAT, "stream_options": 3}), "stream_options", "object"),
    ],
)
async def test_bad_chat_requests_get_400(gateway: Gateway, upstream: FakeUpstream, http: aiohttp.ClientSession,
                                         raw: bytes, param: str | None, words: str) -> None:
    before = len(upstream.seen)
    status, body, _ = await post(http, f"{gateway.url}/v1/chat/completions", data=raw)
    assert status == 400
    error = envelope(body)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]
    assert len(upstream.seen) == before


@pytest.mark.parametrize(("path", "payload", "param"), [
    ("/v1/embeddings", {"model": "embed"}, "input"),
    ("/v1/embeddings", {"model": "embed", "input": 5}, "input"),
    ("/v1/completions", {"model": "instruct"}, "prompt"),
])
async def test_bad_embedding_and_completion_requests(gateway: Gateway, http: aiohttp.ClientSession, path: str,
                                                     payload: dict[str, Any], param: str) -> None:
    status, body, _ = await post(http, gateway.url + path, payload)
    assert status == 400 and envelope(body)["param"] == param


async def test_unknown_model_is_404_and_says_where_to_look(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, f"{gateway.url}/v1/chat/completions", {"model": "gpt-17", **CHAT})
    assert status == 404
    error = envelope(body)
    assert "gpt-17" in error["message"] and "/v1/models" in error["message"]
    assert error["code"] == "model_not_found"


async def test_body_over_the_limit_is_413(gateway: Gateway, upstream: FakeUpstream,
                                          http: aiohttp.ClientSession) -> None:
    before = len(upstream.seen)
    big = {"model": "chat", "messages": [{"role": "user", "content": "x" * 20_000}]}
    status, body, _ = await post(http, f"{gateway.url}/v1/chat/completions", big)
    assert status == 413
    assert "max_request_size_mb" in envelope(body)["message"]
    assert len(upstream.seen) == before


async def test_unreachable_upstream_is_502(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, f"{gateway.url}/v1/chat/completions", {"model": "down", **CHAT})
    assert status == 502
    assert envelope(body)["type"] == "api_connection_error"


async def test_upstream_timeout_is_504_and_frees_the_upstream(gateway: Gateway, upstream: FakeUpstream,
                                                              http: aiohttp.ClientSession) -> None:
    status, body, _ = await post(http, f"{gateway.url}/v1/chat/completions",
                                 {"model": "slow", **CHAT, "fake": {"hang": 30}})
    assert status == 504
    assert envelope(body)["type"] == "timeout_error"
    hung = upstream.seen[-1]
    await upstream.until(lambda: hung.outcome == "cancelled")


@pytest.mark.parametrize(("status", "raw", "message"), [
    (500, "Internal Server Error", "Internal Server Error"),
    (503, {"detail": "model is loading"}, "model is loading"),
    (429, {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit"}},
     "Rate limit reached"),
    (400, {"error": {"message": "context too long", "type": "invalid_request_error", "param": "messages",
                     "code": None}}, "context too long"),
])
async def test_upstream_errors_keep_their_status_in_the_envelope(gateway: Gateway, http: aiohttp.ClientSession,
                                                                 status: int, raw: Any, message: str) -> None:
    got, body, headers = await post(http, f"{gateway.url}/v1/chat/completions",
                                    {"model": "chat", **CHAT, "fake": {"status": status, "body": raw}})
    assert got == status
    error = envelope(body)
    assert error["message"] == message
    assert headers["x-litellm-model-group"] == "chat"
    if isinstance(raw, dict) and "error" in raw:
        assert error["type"] == raw["error"]["type"]
        assert error["param"] == raw["error"]["param"]


async def test_unknown_route_and_wrong_method(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/v1/nothing-here") as r:
        assert r.status == 404
        envelope(await r.json())
    async with http.get(f"{gateway.url}/v1/chat/completions") as r:
        assert r.status == 405
        envelope(await r.json())
    async with http.get(f"{gateway.url}/health/liveliness") as r:
        assert r.status == 200
