"""Deployment rpm/tpm from the config limit what each deployment is sent and steer routing; the
x-ratelimit-* headers report the caller's limits, else the deployment's, else the upstream's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment

MASTER = "sk-deployment-limits"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
MESSAGES = [{"role": "user", "content": "hi!"}]  # 9 prompt tokens reserved; the fake answers 8 in all
UPSTREAM_LIMITS = {"x-ratelimit-limit-requests": "999", "x-ratelimit-remaining-requests": "998",
                   "x-ratelimit-limit-tokens": "50000", "x-ratelimit-remaining-tokens": "49000"}
# Weights so lopsided that the heavy deployment is always picked while it has room.
HEAVY, LIGHT = 1e9, 1e-9


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, upstream_b: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "model_list": [
            deployment("capped", upstream.base_url, model_info={"id": "capped-a"}, rpm=2, weight=HEAVY),
            deployment("capped", upstream_b.base_url, model_info={"id": "capped-b"}, weight=LIGHT),
            deployment("tight", upstream.base_url, model_info={"id": "tight-a"}, rpm=1),
            deployment("tight", upstream_b.base_url, model_info={"id": "tight-b"}, rpm=1),
            deployment("tokens", upstream.base_url, model_info={"id": "tokens"}, tpm=30),
            deployment("primary", upstream.base_url, model_info={"id": "primary"}, rpm=1),
            deployment("backup", upstream_b.base_url, model_info={"id": "backup"}),
            deployment("limited", upstream.base_url, model_info={"id": "limited"}, rpm=100),
            deployment("plain", upstream.base_url, model_info={"id": "plain"}),
        ],
        "router_settings": {"fallbacks": [{"primary": ["backup"]}]},
        "general_settings": {"master_key": MASTER},
    }
    with Gateway(config) as gw:
        yield gw


async def chat(http: aiohttp.ClientSession, gw: Gateway, model: str, key: str = MASTER,
               **extra: Any) -> tuple[int, Any, Any]:
    body = {"model": model, "messages": MESSAGES, **extra}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await (r.json() if not extra.get("stream") else r.read()), r.headers


async def test_a_deployment_at_its_rpm_is_passed_over(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    results = [await chat(http, gateway, "capped") for _ in range(5)]
    assert [s for s, _, _ in results] == [200] * 5
    assert [h["x-litellm-model-id"] for _, _, h in results] == ["capped-a"] * 2 + ["capped-b"] * 3
    # capped-a reports its own rpm while it serves; capped-b has none to report.
    assert [h["x-ratelimit-remaining-requests"] for _, _, h in results[:2]] == ["1", "0"]
    assert all(h["x-ratelimit-limit-requests"] == "2" for _, _, h in results[:2])
    assert all("x-ratelimit-limit-requests" not in h for _, _, h in results[2:])


async def test_every_deployment_at_its_limit_answers_429(gateway: Gateway, http: aiohttp.ClientSession,
                                                          upstream: FakeUpstream, upstream_b: FakeUpstream) -> None:
    before = len(upstream.seen) + len(upstream_b.seen)
    results = [await chat(http, gateway, "tight") for _ in range(4)]
    assert [s for s, _, _ in results] == [200, 200, 429, 429]
    assert {h["x-litellm-model-id"] for _, _, h in results[:2]} == {"tight-a", "tight-b"}
    status, body, headers = results[-1]
    assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "429"
    assert body["error"]["message"].startswith("No deployments available for selected model, Try again in ")
    assert "Passed model=tight" in body["error"]["message"]
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == "0"
    assert len(upstream.seen) + len(upstream_b.seen) == before + 2  # the upstreams never saw the others


async def test_tpm_admits_on_the_estimate_and_settles_with_usage(gateway: Gateway,
                                                                 http: aiohttp.ClientSession) -> None:
    # Each request reserves 9 + 10 = 19 of 30 tokens and gives back the 11 it did not use. Without
    # the settling, the second request would find 11 tokens and be refused.
    results = [await chat(http, gateway, "tokens", max_tokens=10) for _ in range(3)]
    assert [s for s, _, _ in results] == [200, 200, 429]
    assert results[0][2]["x-ratelimit-limit-tokens"] == "30"
    assert results[0][2]["x-ratelimit-remaining-tokens"] == "11"


async def test_a_group_at_its_limit_falls_back(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    groups = [(await chat(http, gateway, "primary"))[2]["x-litellm-model-group"] for _ in range(3)]
    assert groups == ["primary", "backup", "backup"]


async def test_the_callers_limits_win_then_the_deployments_then_the_upstreams(
        gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway.url}/key/generate", json={"rpm_limit": 5}, headers=ADMIN) as r:
        key = (await r.json())["key"]
    fake = {"headers": UPSTREAM_LIMITS}
    # A key with an rpm_limit on a deployment with an rpm: the key's numbers for requests; nobody
    # limits its tokens but the upstream, whose numbers pass through.
    _, _, headers = await chat(http, gateway, "limited", key, fake=fake)
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("5", "4")
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == ("50000", "49000")
    assert headers["llm_provider-x-ratelimit-limit-requests"] == "999"
    # No limits of the caller's: the deployment's rpm.
    _, _, headers = await chat(http, gateway, "limited", fake=fake)
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert int(headers["x-ratelimit-remaining-requests"]) in range(96, 100)
    assert headers["x-ratelimit-limit-tokens"] == "50000"
    # Nobody's but the upstream's, streaming or not.
    for stream in (False, True):
        _, _, headers = await chat(http, gateway, "plain", fake=fake, stream=stream)
        assert {k: headers[k] for k in UPSTREAM_LIMITS} == UPSTREAM_LIMITS


async def test_two_instances_sharing_redis_hold_one_deployment_rpm(upstream: FakeUpstream, redis_base: str,
                                                                   redis_prefix: str,
                                                                   http: aiohttp.ClientSession) -> None:
    config = {"model_list": [deployment("shared", upstream.base_url, model_info={"id": "shared"}, rpm=10)],
              "router_settings": {"redis_url": redis_base},
              "gateway_settings": {"redis_key_prefix": redis_prefix, "redis_timeout": 30.0}}
    with Gateway(config) as first, Gateway(config) as second:
        assert [(await chat(http, first, "shared"))[0] for _ in range(6)] == [200] * 6
        # The second instance finds the 4 the first left, not a limit of its own.
        assert [(await chat(http, second, "shared"))[0] for _ in range(6)] == [200] * 4 + [429] * 2
        # And under a burst spread over both, the two together still admit none beyond it.
        results = await asyncio.gather(*(chat(http, (first, second)[i % 2], "shared") for i in range(20)))
        assert [s for s, _, _ in results].count(200) <= 1  # 1 if a refill (one each 6 s) lands meanwhile
