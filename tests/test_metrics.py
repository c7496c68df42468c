"""/metrics after known sequences of requests: counts, tokens, spend, failures, states; with two workers."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.redis_keys import shared_key
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment

MASTER = "sk-metrics-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
MESSAGES = [{"role": "user", "content": "hi!"}]
IN_PRICE, OUT_PRICE = 0.001, 0.002
# What the fake upstream reports for every chat answer.
PROMPT, COMPLETION = 5, 3
PATIENCE = 10.0


def config(upstream: FakeUpstream, **sections: Any) -> dict[str, Any]:
    priced = {"input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE}
    base: dict[str, Any] = {
        "model_list": [deployment("chat", upstream.base_url, **priced)],
        "general_settings": {"master_key": MASTER},
        "litellm_settings": {"callbacks": ["prometheus"]},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return base


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: aiohttp.ClientSession, gw: Gateway, headers: dict[str, str] | None = None) -> Samples:
    async with http.get(f"{gw.url}/metrics", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


async def chat(http: aiohttp.ClientSession, gw: Gateway, key: str, **extra: Any) -> int:
    body = {"model": "chat", "messages": MESSAGES, **extra}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {key}"}) as response:
        await response.read()
        return response.status


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    async with http.post(f"{gw.url}/key/generate", json=fields, headers=ADMIN) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["key"])


async def test_counts_tokens_spend_and_failures_after_a_known_sequence(
        upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    with Gateway(config(upstream)) as gw:
        await http.post(f"{gw.url}/team/new", json={"team_id": "research", "team_alias": "Research",
                                                     "max_budget": 10.0}, headers=ADMIN)
        key = await new_key(http, gw, key_alias="metrics-bot", team_id="research", max_budget=5.0)
        assert [await chat(http, gw, key) for _ in range(3)] == [200] * 3
        assert await chat(http, gw, key, stream=True, fake={"chunks": 4}) == 200
        assert await chat(http, gw, key, fake={"status": 500, "body": "boom"}) == 500
        assert await chat(http, gw, "sk-not-a-key") == 401
        assert await chat(http, gw, key, model="no-such-model") == 404

        samples = await scrape(http, gw)
        mine = {"api_key_alias": "metrics-bot", "team": "research"}
        requests = "litellm_proxy_total_requests_metric_total"
        assert total(samples, requests, requested_model="chat", status_class="2xx", **mine) == 4
        assert total(samples, requests, requested_model="chat", status_class="5xx", **mine) == 1
        # Names nobody configured never become label values: the unknown model counts under "".
        assert total(samples, requests, requested_model="", status_class="4xx", **mine) == 1
        assert total(samples, requests, status_class="4xx", api_key_alias="", hashed_api_key="") == 1
        assert total(samples, requests) == 7
        failed = "litellm_proxy_failed_requests_metric_total"
        assert total(samples, failed, exception_status="500", requested_model="chat", **mine) == 1
        assert total(samples, failed, exception_status="401", exception_class="token_not_found_in_db") == 1
        assert total(samples, failed, exception_status="404") == 1
        assert total(samples, failed) == 3

        # Four answers carried usage; the failed one cost nothing.
        assert total(samples, "litellm_input_tokens_metric_total", model="chat", **mine) == 4 * PROMPT
        # The fake streams one completion token per chunk.
        completion = 3 * COMPLETION + 4
        assert total(samples, "litellm_output_tokens_metric_total", model="chat", **mine) == completion
        assert total(samples, "litellm_total_tokens_metric_total", **mine) == 4 * PROMPT + completion
        spend = total(samples, "litellm_spend_metric_total", **mine)
        assert spend == pytest.approx(4 * PROMPT * IN_PRICE + completion * OUT_PRICE)

        assert total(samples, "litellm_request_total_latency_metric_count", requested_model="chat") == 6
        assert total(samples, "litellm_llm_api_latency_metric_count", model="chat") == 5
        assert total(samples, "litellm_overhead_latency_metric_count", model="chat") == 5
        assert total(samples, "litellm_llm_api_time_to_first_token_metric_count", model="chat") == 1
        assert total(samples, "litellm_in_flight_requests") == 0
        assert total(samples, "litellm_deployment_state", model_group="chat") == 0
        assert total(samples, "litellm_remaining_api_key_budget_metric",
                     api_key_alias="metrics-bot") == pytest.approx(5.0 - spend)
        assert total(samples, "litellm_remaining_team_budget_metric", team="research",
                     team_alias="Research") == pytest.approx(10.0 - spend)
        # Never the key itself, only a prefix of its hash.
        text = str(samples)
        assert key not in text and key.removeprefix("sk-") not in text
        hashed = {dict(labels).get("hashed_api_key") for _, labels in samples}
        assert all(len(h) <= 16 for h in hashed if h)


async def test_upstream_rate_limit_headers_and_cooldowns(upstream: FakeUpstream, upstream_b: FakeUpstream,
                                                         http: aiohttp.ClientSession) -> None:
    settings = config(upstream, router_settings={"allowed_fails": 0, "cooldown_time": 60, "num_retries": 0})
    settings["model_list"] = [deployment("pair", upstream.base_url), deployment("pair", upstream_b.base_url)]
    with Gateway(settings) as gw:
        limits = {"x-ratelimit-remaining-requests": "41", "x-ratelimit-remaining-tokens": "9000"}
        seen_ok = 0
        while seen_ok < 2:
            assert await chat(http, gw, MASTER, model="pair", fake={"headers": limits}) == 200
            seen_ok += 1
        # Fail until one of the two has been put to rest.
        for _ in range(20):
            await chat(http, gw, MASTER, model="pair", fake={"status": 500})
            samples = await scrape(http, gw)
            if total(samples, "litellm_deployment_cooled_down_total", model_group="pair"):
                break
        assert total(samples, "litellm_deployment_cooled_down_total", model_group="pair") == 1
        states = sorted(v for (n, _), v in samples.items() if n == "litellm_deployment_state")
        assert states == [0, 2]
        assert 41 in {v for (n, _), v in samples.items() if n == "litellm_remaining_requests_metric"}
        assert 9000 in {v for (n, _), v in samples.items() if n == "litellm_remaining_tokens_metric"}


async def test_metrics_behind_the_master_key(upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    with Gateway(config(upstream, litellm_settings={"require_auth_for_metrics_endpoint": True})) as gw:
        async with http.get(f"{gw.url}/metrics") as response:
            assert response.status == 401
            assert "error" in await response.json()
        key = await new_key(http, gw)
        async with http.get(f"{gw.url}/metrics", headers={"Authorization": f"Bearer {key}"}) as response:
            assert response.status == 403
        await scrape(http, gw, ADMIN)


async def test_metrics_off_unless_asked_for(upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    settings = config(upstream)
    del settings["litellm_settings"]
    with Gateway(settings) as gw:
        async with http.get(f"{gw.url}/metrics") as response:
            assert response.status == 404


async def test_one_redis_call_admits_a_request(upstream: FakeUpstream, redis_base: str, redis_prefix: str,
                                               http: aiohttp.ClientSession) -> None:
    """Caller limits, budget and the deployment's rpm/tpm: one round trip to Redis a request; a
    deployment that is full costs one more, for its own limits only."""
    shared = config(upstream, router_settings={"redis_url": redis_base},
                    gateway_settings={"redis_key_prefix": redis_prefix})
    shared["model_list"][0]["litellm_params"].update(rpm=4, tpm=1_000_000)
    with Gateway(shared) as gw:
        key = await new_key(http, gw, rpm_limit=100, tpm_limit=1_000_000, max_parallel_requests=10, max_budget=10.0)
        assert await chat(http, gw, key) == 200  # the script is loaded into Redis, if it was not yet
        before = total(await scrape(http, gw), "litellm_redis_latency_count", operation="rate_limit")
        assert [await chat(http, gw, key) for _ in range(3)] == [200] * 3
        samples = await scrape(http, gw)
        assert total(samples, "litellm_redis_latency_count", operation="rate_limit") == before + 3
        assert total(samples, "litellm_redis_latency_count", operation="budget") == 0
        assert await chat(http, gw, key) == 429  # the deployment's rpm is used up
        samples = await scrape(http, gw)
        assert total(samples, "litellm_redis_latency_count", operation="rate_limit") == before + 4


async def test_redis_latency_and_failures(upstream: FakeUpstream, redis_base: str, redis_prefix: str,
                                          http: aiohttp.ClientSession) -> None:
    shared = config(upstream, router_settings={"redis_url": redis_base},
                    gateway_settings={"redis_key_prefix": redis_prefix})
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_base)
    # Scripts not yet cached on the server: redis-py's load-and-retry is not a failure.
    await client.script_flush()
    await client.aclose()
    with Gateway(shared) as gw:
        key = await new_key(http, gw, rpm_limit=100, max_budget=10.0)
        assert [await chat(http, gw, key) for _ in range(3)] == [200] * 3
        samples = await scrape(http, gw)
        # The rate limit and the budget in one script a request (gateway/admission.py)...
        assert total(samples, "litellm_redis_latency_count", operation="rate_limit") >= 3
        assert total(samples, "litellm_redis_latency_count", operation="budget") == 0
        # ...and their settlements sent in pipelines (gateway/limits/settle_batch.py), a few ms later.
        for _ in range(100):
            if total(samples, "litellm_redis_latency_count", operation="settle") >= 1:
                break
            samples = await scrape(http, gw)
        assert total(samples, "litellm_redis_latency_count", operation="settle") >= 1
        assert total(samples, "litellm_redis_fails_total") == 0
    # A Redis that is not there: the check at start fails (counted), and fail_open keeps serving.
    from tests.harness import free_port
    gone = config(upstream, router_settings={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    gone["model_list"][0]["litellm_params"].pop("input_cost_per_token")
    with Gateway(gone) as gw:
        key = await new_key(http, gw, rpm_limit=100)
        assert await chat(http, gw, key) == 200
        samples = await scrape(http, gw)
        assert total(samples, "litellm_redis_fails_total", operation="check") == 1


async def test_two_workers_report_every_request(upstream: FakeUpstream, tmp_path: Any,
                                                http: aiohttp.ClientSession) -> None:
    settings = config(upstream, general_settings={"database_url": f"sqlite:///{tmp_path / 'm.db'}"})
    with Gateway(settings, "--workers", "2") as gw:
        sent = 0
        # New connections spread over the workers (SO_REUSEPORT); go on until both have answered.
        while len(set(re.findall(r"gateway\.access\[(\d+)\]", gw.log()))) < 2 or sent < 20:
            assert sent < 400, "one worker answered everything"
            async with aiohttp.ClientSession() as fresh:
                async with fresh.post(f"{gw.url}/v1/chat/completions", headers=ADMIN,
                                      json={"model": "chat", "messages": MESSAGES}) as response:
                    assert response.status == 200
                    await response.read()
            sent += 1
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        while True:
            async with aiohttp.ClientSession() as fresh:
                async with fresh.get(f"{gw.url}/metrics") as response:
                    text = await response.text()
            samples = {(s.name, frozenset(s.labels.items())): s.value
                       for f in text_string_to_metric_families(text) for s in f.samples}
            counted = total(samples, "litellm_proxy_total_requests_metric_total", requested_model="chat")
            if counted == sent:
                break
            assert counted < sent and loop.time() < deadline, (counted, sent)
            await asyncio.sleep(0.1)
        assert total(samples, "litellm_input_tokens_metric_total") == sent * PROMPT
        assert total(samples, "litellm_request_total_latency_metric_count") == sent
        # Per-process numbers would mislead when several processes serve: they are left out.
        assert not any(n.startswith("process_") for n, _ in samples)


async def test_scrape_during_load_does_not_disturb_requests(upstream: FakeUpstream,
                                                            http: aiohttp.ClientSession) -> None:
    with Gateway(config(upstream)) as gw:
        async def scraper() -> int:
            done = 0
            for _ in range(20):
                await scrape(http, gw)
                done += 1
            return done

        statuses, scrapes = await asyncio.gather(
            asyncio.gather(*(chat(http, gw, MASTER, user=uuid.uuid4().hex) for _ in range(60))), scraper())
        assert list(statuses) == [200] * 60 and scrapes == 20
        samples = await scrape(http, gw)
        assert total(samples, "litellm_proxy_total_requests_metric_total") == 60


async def test_settlements_queued_at_shutdown_reach_redis(upstream: FakeUpstream, redis_base: str,
                                                          redis_prefix: str, http: aiohttp.ClientSession) -> None:
    """Settlements wait a few ms to go in one pipeline: a gateway stopped right after answering still
    sends them, so no reservation is left held and the spend is counted."""
    shared = config(upstream, router_settings={"redis_url": redis_base},
                    gateway_settings={"redis_key_prefix": redis_prefix})
    with Gateway(shared) as gw:
        key = await new_key(http, gw, max_budget=10.0, max_parallel_requests=5)
        assert [await chat(http, gw, key) for _ in range(3)] == [200] * 3
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_base, decode_responses=True)
    try:
        counters = [name async for name in client.scan_iter(shared_key(redis_prefix, "budget", "key", "*"))]
        assert len(counters) == 1
        spent, reserved = await client.hmget(counters[0], "spent", "reserved")
        assert float(spent) > 0
        assert float(reserved) == 0
        assert [name async for name in client.scan_iter(shared_key(redis_prefix, "slots", "*"))
                if await client.zcard(name)] == []
    finally:
        await client.aclose()


async def test_asyncio_task_gauge_rises_with_open_streams_and_falls_back_when_clients_drop(
        upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    with Gateway(config(upstream)) as gw:
        assert await chat(http, gw, MASTER) == 200
        idle = total(await scrape(http, gw), "gateway_asyncio_tasks")
        assert idle >= 1  # at least the task answering the scrape
        held: list[aiohttp.ClientResponse] = []
        body = {"model": "chat", "messages": MESSAGES, "stream": True, "fake": {"chunks": 200, "delay": 0.05}}
        for _ in range(5):
            response = await http.post(f"{gw.url}/v1/chat/completions", json=body, headers=ADMIN)
            assert response.status == 200
            await response.content.readany()
            held.append(response)
        assert total(await scrape(http, gw), "gateway_asyncio_tasks") >= idle + 5
        for response in held:
            response.close()  # the client goes away mid-stream
        for _ in range(int(PATIENCE / 0.1)):
            now = total(await scrape(http, gw), "gateway_asyncio_tasks")
            if now <= idle:
                break
            await asyncio.sleep(0.1)
        assert now <= idle
