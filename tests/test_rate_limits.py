"""Rate limits: the limiter's contract on both backends, and the limits over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from gateway.limits.buckets import Bucket, LocalLimiter, RedisLimiter, Short, SlotsFull
from gateway.node.client import NodeLimiter
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment
from tests.tcp_relay import TcpRelay

MASTER = "sk-limits-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
MESSAGES = [{"role": "user", "content": "hi!"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limiter(backend: str, shared_state: tuple[str, str] | None, redis_client: Any,
           request: pytest.FixtureRequest) -> Any:
    if shared_state is not None:
        return RedisLimiter(redis_client, shared_state[1])
    if backend == "node":
        return NodeLimiter(request.getfixturevalue("node_client"))
    return LocalLimiter()


async def test_a_bucket_empties_and_says_when_it_will_refill(limiter: Any) -> None:
    bucket = Bucket(f"rpm:key:{uuid.uuid4().hex}", 6.0)
    results = [await limiter.take([bucket], 1.0) for _ in range(8)]
    assert sum(1 for r in results if not isinstance(r, Short)) == 6
    short = results[-1]
    assert isinstance(short, Short) and short.bucket == bucket and 0 < short.retry_after <= 10.5
    await limiter.give([bucket], 2.0)
    assert not isinstance(await limiter.take([bucket], 2.0), Short)


async def test_every_bucket_must_hold_enough_and_none_is_touched_otherwise(limiter: Any) -> None:
    roomy, tight = Bucket(f"a{uuid.uuid4().hex}", 100.0), Bucket(f"b{uuid.uuid4().hex}", 1.0)
    assert isinstance(await limiter.take([roomy, tight], 2.0), Short)
    assert await limiter.take([roomy], 100.0) == [pytest.approx(0.0, abs=0.01)]


async def test_take_each_takes_its_own_amount_from_each_bucket(limiter: Any) -> None:
    requests, tokens = Bucket(f"rpm:{uuid.uuid4().hex}", 10.0), Bucket(f"tpm:{uuid.uuid4().hex}", 100.0)
    assert await limiter.take_each([requests, tokens], [1.0, 60.0]) == [pytest.approx(9.0, abs=0.01),
                                                                        pytest.approx(40.0, abs=0.01)]
    short = await limiter.take_each([requests, tokens], [1.0, 60.0])
    assert isinstance(short, Short) and short.bucket == tokens
    # Refused as a whole: the request bucket was not touched either.
    assert await limiter.take_each([requests], [9.0]) == [pytest.approx(0.0, abs=0.01)]


async def test_tokens_used_beyond_the_estimate_are_owed(limiter: Any) -> None:
    bucket = Bucket(f"tpm:{uuid.uuid4().hex}", 100.0)
    assert not isinstance(await limiter.take([bucket], 50.0), Short)
    await limiter.give([bucket], -50.0)  # the answer used 100, not 50
    assert isinstance(await limiter.take([bucket], 5.0), Short)


async def test_parallel_slots(limiter: Any) -> None:
    name = f"par:key:{uuid.uuid4().hex}"
    assert await limiter.acquire([(name, 2)], "r1") is None
    assert await limiter.acquire([(name, 2)], "r2") is None
    assert await limiter.acquire([(name, 2)], "r3") == (name, 2)
    await limiter.release([name], "r1")
    assert await limiter.acquire([(name, 2)], "r3") is None


async def test_admit_takes_buckets_and_slots_together_or_nothing(limiter: Any) -> None:
    ref = uuid.uuid4().hex
    rpm, tpm, slots = Bucket(f"rpm:key:{ref}", 10.0), Bucket(f"tpm:key:{ref}", 100.0), [(f"par:key:{ref}", 1)]
    assert await limiter.admit([rpm, tpm], [1.0, 60.0], slots, "r1") == [pytest.approx(9.0), pytest.approx(40.0)]
    full = await limiter.admit([rpm, tpm], [1.0, 10.0], slots, "r2")
    assert isinstance(full, SlotsFull) and full == (f"par:key:{ref}", 1)
    short = await limiter.admit([rpm, tpm], [1.0, 60.0], [], "r3")
    assert isinstance(short, Short) and short.bucket == tpm
    await limiter.release([f"par:key:{ref}"], "r1")
    # Neither refusal took anything: 9 requests and 40 tokens are still there (give or take the refill).
    left = await limiter.admit([rpm, tpm], [1.0, 40.0], slots, "r4")
    assert not isinstance(left, (Short, SlotsFull)) and left[0] == pytest.approx(8.0, abs=0.1)


async def test_buckets_refill_and_slots_expire_with_the_clock() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    bucket = Bucket("rpm:key:k", 60.0)
    assert not isinstance(await limiter.take([bucket], 60.0), Short)
    assert isinstance(await limiter.take([bucket], 1.0), Short)
    clock.now += 1.0  # one request a second comes back
    assert not isinstance(await limiter.take([bucket], 1.0), Short)
    assert await limiter.acquire([("par:key:k", 1)], "leaked") is None
    assert await limiter.acquire([("par:key:k", 1)], "next") == ("par:key:k", 1)
    clock.now += 601  # a slot nobody released is taken back after its TTL
    assert await limiter.acquire([("par:key:k", 1)], "next") is None


def config(upstream: FakeUpstream, **general: Any) -> dict[str, Any]:
    return {"model_list": [{"model_name": "echo",
                            "litellm_params": {"model": "mock/echo", "mock_response": "ok ok ok"}},
                           deployment("chat", upstream.base_url)],
            "general_settings": {"master_key": MASTER, **general}}


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    with Gateway(config(upstream)) as gw:
        yield gw


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    async with http.post(f"{gw.url}/key/generate", json=fields, headers=ADMIN) as r:
        assert r.status == 200
        return str((await r.json())["key"])


async def chat(http: aiohttp.ClientSession, gw: Gateway, key: str, **extra: Any) -> tuple[int, Any, Any]:
    body = {"model": "echo", "messages": MESSAGES, "max_tokens": 2, **extra}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(), r.headers


async def test_rpm_limit_and_its_headers(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, rpm_limit=5)
    results = [await chat(http, gateway, key) for _ in range(8)]
    assert [s for s, _, _ in results] == [200] * 5 + [429] * 3
    assert [h["x-ratelimit-remaining-requests"] for _, _, h in results[:5]] == ["4", "3", "2", "1", "0"]
    assert all(h["x-ratelimit-limit-requests"] == "5" for _, _, h in results[:5])
    status, body, headers = results[-1]
    assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "429"
    assert 1 <= int(headers["retry-after"]) <= 12 and headers["x-ratelimit-remaining-requests"] == "0"


async def test_tpm_limit_admits_on_the_estimate(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, tpm_limit=100)  # each request: 9 prompt + 2 answer tokens
    statuses = [(await chat(http, gateway, key))[0] for _ in range(12)]
    assert statuses.count(200) in (9, 10) and statuses[-1] == 429


async def test_model_rpm_limit(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, model_rpm_limit={"echo": 1})
    assert [(await chat(http, gateway, key))[0] for _ in range(2)] == [200, 429]
    assert (await chat(http, gateway, key, model="chat"))[0] == 200


async def test_parallel_slots_are_released_when_the_client_leaves(gateway: Gateway, upstream: FakeUpstream,
                                                                  http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, max_parallel_requests=2)
    headers = {"Authorization": f"Bearer {key}"}
    gate = uuid.uuid4().hex
    held = []
    for _ in range(2):
        response = await http.post(f"{gateway.url}/v1/chat/completions", headers=headers, json={
            "model": "chat", "messages": MESSAGES, "stream": True, "fake": {"chunks": 3, "gate": gate}})
        await response.content.readuntil(b"\n\n")
        held.append(response)
    status, body, _ = await chat(http, gateway, key)
    assert status == 429 and "parallel" in body["error"]["message"]
    held[0].close()  # the client leaves: its slot must come back
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (status := (await chat(http, gateway, key))[0]) != 200:
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    upstream.open_gate(gate)
    await held[1].read()
    held[1].close()


async def test_two_instances_sharing_redis_hold_one_rpm_limit(upstream: FakeUpstream, postgres_url: str,
                                                              redis_base: str, redis_prefix: str,
                                                              http: aiohttp.ClientSession) -> None:
    shared = {**config(upstream, database_url=postgres_url), "router_settings": {"redis_url": redis_base},
              "gateway_settings": {"redis_key_prefix": redis_prefix, "redis_timeout": 30.0}}
    with Gateway(shared) as first, Gateway(shared) as second:
        key = await new_key(http, first, rpm_limit=10)
        results = await asyncio.gather(*(chat(http, (first, second)[i % 2], key) for i in range(40)))
        assert [s for s, _, _ in results].count(200) in (10, 11)  # 11 if a refill lands mid-burst


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_follows_the_failure_policy(upstream: FakeUpstream, redis_base: str, redis_prefix: str,
                                                     http: aiohttp.ClientSession, fail_open: bool) -> None:
    parts = urlsplit(redis_base)
    relay = TcpRelay(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    settings = {**config(upstream), "router_settings": {"redis_url": f"redis://127.0.0.1:{relay.port}/0"},
                "gateway_settings": {"redis_key_prefix": redis_prefix, "fail_open": fail_open}}
    try:
        with Gateway(settings) as gw:
            key = await new_key(http, gw, rpm_limit=3)
            assert (await chat(http, gw, key))[0] == 200
            relay.cut()
            statuses = [(await chat(http, gw, key))[0] for _ in range(5)]
            if fail_open:
                # This instance's own bucket, full again, now does the counting.
                assert statuses == [200, 200, 200, 429, 429]
                assert "limits and budgets are kept by this process until then (fail_open: true)" in gw.log()
            else:
                assert statuses == [503] * 5
            relay.restore()
    finally:
        relay.stop()


async def test_overload_sheds_with_503(upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    settings = {**config(upstream), "gateway_settings": {"max_in_flight": 2}}
    gate = uuid.uuid4().hex
    with Gateway(settings) as gw:
        body = {"model": "chat", "messages": MESSAGES, "stream": True, "fake": {"chunks": 2, "gate": gate}}
        held = []
        for _ in range(2):
            response = await http.post(f"{gw.url}/v1/chat/completions", json=body, headers=ADMIN)
            await response.content.readuntil(b"\n\n")
            held.append(response)
        status, answer, headers = await chat(http, gw, MASTER)
        assert status == 503 and answer["error"]["message"] == "Proxy overloaded — retry with backoff"
        assert headers["retry-after"] == "1"
        async with http.get(f"{gw.url}/health/liveliness") as r:
            assert r.status == 200  # only the proxied routes shed
        upstream.open_gate(gate)
        for response in held:
            await response.read()
            response.close()
        assert (await chat(http, gw, MASTER))[0] == 200
