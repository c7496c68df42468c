"""Routing that survives failing upstreams: retries, fallbacks, cooldowns, all before the first byte."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, free_port

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, upstream_b: FakeUpstream) -> Iterator[Gateway]:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = {
        "model_list": [
            # "pair": one deployment that is down and one that works
            deployment("pair", dead, model_info={"id": "pair-dead"}),
            deployment("pair", upstream_b.base_url, model_info={"id": "pair-live"}),
            # "flaky": both on real upstreams; the request body decides who fails
            deployment("flaky", upstream.base_url, model_info={"id": "flaky-a"}),
            deployment("flaky", upstream_b.base_url, model_info={"id": "flaky-b"}),
            deployment("primary", dead, model_info={"id": "primary-dead"}),
            deployment("backup", upstream_b.base_url, model_info={"id": "backup"}),
            deployment("small", upstream.base_url, model_info={"id": "small"}),
            deployment("large", upstream_b.base_url, model_info={"id": "large"}),
            deployment("strict", upstream.base_url, model_info={"id": "strict"}),
            deployment("lenient", upstream_b.base_url, model_info={"id": "lenient"}),
            # "mixed": a dead HTTP deployment beside the built-in mock; "doomed" falls back to the mock
            deployment("mixed", dead, model_info={"id": "mixed-dead"}),
            {"model_name": "mixed", "litellm_params": {"model": "mock/echo"}, "model_info": {"id": "mixed-mock"}},
            deployment("doomed", dead, model_info={"id": "doomed"}),
            {"model_name": "mocked", "litellm_params": {"model": "mock/echo"}, "model_info": {"id": "mocked"}},
        ],
        "router_settings": {
            "num_retries": 2, "allowed_fails": 1, "cooldown_time": 60,
            "fallbacks": [{"primary": ["backup"]}, {"doomed": ["mocked"]}],
            "context_window_fallbacks": [{"small": ["large"]}],
            "content_policy_fallbacks": [{"strict": ["lenient"]}],
        },
    }
    with Gateway(config) as gw:
        yield gw


async def chat(http: aiohttp.ClientSession, gw: Gateway, model: str, **extra: Any) -> tuple[int, Any, Any]:
    async with http.post(f"{gw.url}/v1/chat/completions", json={"model": model, "messages": MESSAGES, **extra}) as r:
        return r.status, await r.json(), r.headers


async def test_a_dead_deployment_is_retried_around_then_cooled(gateway: Gateway, http: aiohttp.ClientSession,
                                                               upstream_b: FakeUpstream) -> None:
    results = [await chat(http, gateway, "pair") for _ in range(10)]
    assert [status for status, _, _ in results] == [200] * 10
    assert {headers["x-litellm-model-id"] for _, _, headers in results} == {"pair-live"}


async def test_fallback_group_after_retries(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    status, body, headers = await chat(http, gateway, "primary")
    assert status == 200 and headers["x-litellm-model-group"] == "backup"
    assert body["choices"][0]["message"]["content"] == "beta says hi"


async def test_context_window_and_content_policy_fallbacks(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    too_long = {"error": {"message": "This model's maximum context length is 8192 tokens", "type":
                          "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}
    # The fake fails for the deployment that sees the `fake` field: the first one; the fallback
    # gets the same body, so it is told apart by which upstream answers.
    status, _, headers = await chat(http, gateway, "small", fake={"status": 400, "body": too_long})
    assert status == 400  # the fallback upstream got the same failing body ...
    assert headers["x-litellm-model-group"] == "large"  # ... but it was tried
    policy = {"error": {"message": "flagged by the content_filter", "type": "invalid_request_error"}}
    status, _, headers = await chat(http, gateway, "strict", fake={"status": 400, "body": policy})
    assert headers["x-litellm-model-group"] == "lenient"


async def test_a_plain_client_error_is_not_retried(gateway: Gateway, http: aiohttp.ClientSession,
                                                   upstream: FakeUpstream, upstream_b: FakeUpstream) -> None:
    before = len(upstream.seen) + len(upstream_b.seen)
    status, body, _ = await chat(http, gateway, "flaky", fake={"status": 400, "body": {"error": {
        "message": "bad temperature", "type": "invalid_request_error"}}})
    assert status == 400 and body["error"]["message"] == "bad temperature"
    assert len(upstream.seen) + len(upstream_b.seen) == before + 1


async def test_server_errors_are_retried_on_another_deployment(gateway: Gateway, http: aiohttp.ClientSession,
                                                               upstream: FakeUpstream,
                                                               upstream_b: FakeUpstream) -> None:
    before = len(upstream.seen) + len(upstream_b.seen)
    status, _, _ = await chat(http, gateway, "flaky", fake={"status": 500, "body": "boom"})
    # Both deployments answer 500 to this body: one try and two retries, then the error.
    assert status == 500
    assert len(upstream.seen) + len(upstream_b.seen) == before + 3


async def test_a_429_cools_the_deployment_for_its_retry_after(http: aiohttp.ClientSession,
                                                              upstream: FakeUpstream,
                                                              upstream_b: FakeUpstream) -> None:
    config = {"model_list": [deployment("busy", upstream.base_url, model_info={"id": "busy-a"}),
                             deployment("busy", upstream_b.base_url, model_info={"id": "busy-b"})],
              "router_settings": {"num_retries": 0, "allowed_fails": 100}}
    with Gateway(config) as gw:
        status, _, headers = await chat(http, gw, "busy", fake={"status": 429, "body": "slow down"})
        assert status == 429
        limited = headers["x-litellm-model-id"]
        ids = {(await chat(http, gw, "busy"))[2]["x-litellm-model-id"] for _ in range(10)}
        # The deployment that answered 429 rests (no retry-after was sent: cooldown_time, 5 s).
        assert ids == {"busy-a", "busy-b"} - {limited}


async def test_all_cooling_down_answers_503_with_retry_after(http: aiohttp.ClientSession) -> None:
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    config = {"model_list": [deployment("gone", dead[0]), deployment("gone", dead[1])],
              "router_settings": {"num_retries": 0, "allowed_fails": 0, "cooldown_time": 30}}
    with Gateway(config) as gw:
        statuses = [(await chat(http, gw, "gone"))[0] for _ in range(4)]
        assert statuses[:2] == [502, 502] and statuses[-1] == 503
        status, body, headers = await chat(http, gw, "gone")
        assert status == 503 and "cooling down" in body["error"]["message"]
        assert 1 <= int(headers["retry-after"]) <= 30
        async with http.get(f"{gw.url}/health") as r:
            report = await r.json()
        assert all(0 < e["cooldown_remaining_s"] <= 30 for e in report["unhealthy_endpoints"])


def test_fallbacks_must_name_known_groups() -> None:
    from tests.harness import run_cli

    result = run_cli({"model_list": [{"model_name": "a", "litellm_params": {"model": "mock/a"}}],
                      "router_settings": {"fallbacks": [{"a": ["nowhere"]}]}})
    assert result.returncode == 2 and "router_settings.fallbacks.a" in result.stderr


async def test_cooldown_recovers(http: aiohttp.ClientSession, upstream: FakeUpstream) -> None:
    port = free_port()
    config = {"model_list": [deployment("recovering", f"http://127.0.0.1:{port}/v1", model_info={"id": "r1"}),
                             deployment("recovering", upstream.base_url, model_info={"id": "r2"})],
              "router_settings": {"num_retries": 0, "allowed_fails": 0, "cooldown_time": 0.5}}
    with Gateway(config) as gw:
        seen = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while "r1" not in seen or len(seen) < 2:
            status, _, headers = await chat(http, gw, "recovering")
            seen.add(headers.get("x-litellm-model-id"))
            assert loop.time() < deadline
        # r1 is dead: it was tried, cooled, and tried again after its cooldown (each time a 502).
        assert {"r1", "r2"} <= seen


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_retries_and_fallbacks_cross_between_http_and_mock_deployments(
        gateway: Gateway, http: aiohttp.ClientSession, stream: bool) -> None:
    for model, landed in (("mixed", "mixed-mock"), ("doomed", "mocked")):
        for _ in range(4):
            async with http.post(f"{gateway.url}/v1/chat/completions",
                                 json={"model": model, "messages": MESSAGES, "stream": stream}) as r:
                raw = await r.read()
                assert r.status == 200, raw
                assert r.headers["x-litellm-model-id"] == landed
            assert raw.endswith(b"data: [DONE]\n\n") if stream else b'"content":"hi"' in raw


async def test_litellms_testing_parameters(http: aiohttp.ClientSession, upstream: FakeUpstream,
                                           upstream_b: FakeUpstream) -> None:
    """mock_response answers without an upstream; mock_testing_fallbacks fails the group asked for, so
    its fallback answers; mock_testing_rate_limit_error fails the first attempt only (the retry goes on to
    the upstream, as LiteLLM's does), mock_timeout every attempt."""
    config = {"model_list": [deployment("main", upstream.base_url), deployment("spare", upstream_b.base_url),
                             deployment("unretried", upstream.base_url, num_retries=0)],
              "router_settings": {"num_retries": 1, "fallbacks": [{"main": ["spare"]}]}}
    with Gateway(config) as gw:
        seen = len(upstream.seen) + len(upstream_b.seen)
        status, body, headers = await chat(http, gw, "main", mock_response="canned words")
        assert status == 200 and body["choices"][0]["message"]["content"] == "canned words"
        assert headers["x-litellm-model-group"] == "main"
        async with http.post(f"{gw.url}/v1/chat/completions", json={
                "model": "main", "messages": MESSAGES, "stream": True, "mock_response": "canned stream"}) as r:
            text = (await r.read()).decode()
        assert '"content":" stream"' in text and text.endswith("data: [DONE]\n\n")
        assert len(upstream.seen) + len(upstream_b.seen) == seen  # no upstream was called
        status, body, headers = await chat(http, gw, "main", mock_testing_fallbacks=True)
        assert status == 200 and headers["x-litellm-model-group"] == "spare"
        assert "mock_testing_fallbacks" not in upstream_b.seen[-1].body  # taken out of the body
        seen = len(upstream.seen)
        status, body, headers = await chat(http, gw, "main", mock_testing_rate_limit_error=True)
        assert status == 200 and headers["x-litellm-attempted-retries"] == "1"
        assert len(upstream.seen) == seen + 1 and "mock_testing_rate_limit_error" not in upstream.seen[-1].body
        status, body, _ = await chat(http, gw, "unretried", mock_testing_rate_limit_error=True)
        assert status == 429 and body["error"]["type"] == "rate_limit_error"
        assert "mock exception for model=unretried, to trigger a rate limit error" in body["error"]["message"]
        status, body, _ = await chat(http, gw, "main", mock_timeout=True)
        assert status == 408 and body["error"]["type"] == "timeout_error"
        status, body, _ = await chat(http, gw, "main", mock_response={"not": "text"})
        assert status == 400 and body["error"]["param"] == "mock_response"


async def test_fallbacks_in_the_body_and_litellms_routing_headers(http: aiohttp.ClientSession, upstream: FakeUpstream,
                                                                  upstream_b: FakeUpstream) -> None:
    master = {"Authorization": "Bearer sk-failover-master"}
    config = {"model_list": [deployment("main", upstream.base_url), deployment("spare", upstream_b.base_url)],
              "general_settings": {"master_key": "sk-failover-master"},
              "router_settings": {"num_retries": 1, "timeout": 42}}
    with Gateway(config) as gw:
        async def ask(headers: dict[str, str], **extra: Any) -> tuple[int, Any, Any]:
            async with http.post(f"{gw.url}/v1/chat/completions", headers=headers,
                                 json={"model": "main", "messages": MESSAGES, **extra}) as r:
                return r.status, await r.json(), r.headers

        status, _, headers = await ask(master)
        assert status == 200 and headers["x-litellm-attempted-retries"] == "0"
        assert (headers["x-litellm-max-retries"], headers["x-litellm-timeout"]) == ("1", "42.0")
        assert float(headers["x-litellm-overhead-duration-ms"]) >= 0
        status, _, headers = await ask(master, fallbacks=["spare"], mock_testing_fallbacks=True)
        assert status == 200 and headers["x-litellm-model-group"] == "spare"
        assert (headers["x-litellm-attempted-retries"], headers["x-litellm-attempted-fallbacks"]) == ("1", "1")
        assert "fallbacks" not in upstream_b.seen[-1].body
        status, _, _ = await ask(master, mock_testing_fallbacks=True)  # no fallback asked or configured
        assert status == 500
        async with http.post(f"{gw.url}/key/generate", headers=master, json={"models": ["main"]}) as r:
            main_only = {"Authorization": f"Bearer {(await r.json())['key']}"}
        status, body, _ = await ask(main_only, fallbacks=["spare"])
        assert status == 401 and body["error"]["type"] == "key_model_access_denied"
        status, body, _ = await ask(master, fallbacks=["nowhere"])
        assert status == 404
        status, body, _ = await ask(master, fallbacks="spare")
        assert status == 400 and body["error"]["param"] == "fallbacks"


async def test_fallbacks_given_as_objects_send_their_own_parameters(http: aiohttp.ClientSession,
                                                                   upstream: FakeUpstream,
                                                                   upstream_b: FakeUpstream) -> None:
    """LiteLLM's client-side fallbacks may be objects: `model` names the group, the other fields replace
    the request's own for that fallback (its messages, say); the first group still gets the request's."""
    master = {"Authorization": "Bearer sk-failover-master"}
    config = {"model_list": [deployment("main", upstream.base_url), deployment("spare", upstream_b.base_url)],
              "general_settings": {"master_key": "sk-failover-master"}, "router_settings": {"num_retries": 0}}
    own = [{"role": "assistant", "content": "said before"}, {"role": "user", "content": "shorter question"}]
    with Gateway(config) as gw:
        async def ask(**extra: Any) -> tuple[int, Any, Any]:
            async with http.post(f"{gw.url}/v1/chat/completions", headers=master,
                                 json={"model": "main", "messages": MESSAGES, **extra}) as r:
                return r.status, await r.json(), r.headers

        status, body, headers = await ask(mock_testing_fallbacks=True, temperature=0.5,
                                          fallbacks=[{"model": "spare", "messages": own, "temperature": 0}])
        assert status == 200, body
        assert (headers["x-litellm-model-group"], headers["x-litellm-attempted-fallbacks"]) == ("spare", "1")
        sent = upstream_b.seen[-1].body
        assert sent["messages"] == own and sent["temperature"] == 0 and sent["model"] == "spare-upstream"
        assert "fallbacks" not in sent
        seen = len(upstream.seen)
        status, _, _ = await ask(fallbacks=[{"model": "spare", "messages": own}])  # main answers: no fallback
        assert status == 200
        assert upstream.seen[-1].body["messages"] == MESSAGES and len(upstream.seen) == seen + 1
        for bad, expected in (([{"messages": own}], 400), ([{"model": ""}], 400), ([{"model": "nowhere"}], 404),
                              ([{"model": "spare", "stream": True}], 400), ([["spare"]], 400)):
            status, body, _ = await ask(fallbacks=bad)
            assert status == expected, (bad, body)
            if expected == 400:
                assert body["error"]["param"] == "fallbacks"
