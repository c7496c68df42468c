"""Rate limits and budgets on the routes that are not chat: /images/generations, /moderations, /audio/speech,
/audio/transcriptions, /audio/translations and /rerank, over real HTTP against a gateway process and the
fake upstreams of tests/fakes.py and tests/media_fakes.py.

Each route's request is priced at a price set in the config, so a key's budget can be one request's cost
exactly. Moderations are free (OpenAI charges nothing for them, and they carry no usage): their budget is
used up by an image."""

from __future__ import annotations

import asyncio
import io
import random
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import scratch_prefix
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, new_virtual_key, spend_record
from tests.media_fakes import MediaUpstream

MASTER = "sk-media-limits-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
IMAGE_PRICE = 0.04
PER_CHARACTER = 1.5e-05
PER_SECOND = 0.0001
PER_QUERY = 0.002
SPOKEN = "Color is light."
SECONDS = 2.0
RATE = 16_000
DOCUMENTS = ["Carson City is the capital of Nevada.", "Washington, D.C. is the capital of the United States."]


def wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(RATE)
        audio.writeframes(random.Random(11).randbytes(int(seconds * RATE) * 2))
    return out.getvalue()


AUDIO = wav(SECONDS)


@dataclass(frozen=True)
class Route:
    """One endpoint: how to call it, what a call costs, and how many calls its upstream has had."""
    name: str
    path: str
    group: str  # its model group; `{group}-rpm` is the same deployment with rpm 2
    call_type: str
    cost: float
    upload: bool = False

    def payload(self, model: str) -> dict[str, Any]:
        return {
            "images/generations": {"model": model, "prompt": "a red cat"},
            "moderations": {"model": model, "input": "hello"},
            "audio/speech": {"model": model, "voice": "alloy", "input": SPOKEN},
            "rerank": {"model": model, "query": "capital of the United States?", "documents": DOCUMENTS},
        }.get(self.call_type, {"model": model})


ROUTES = [
    Route("images", "/v1/images/generations", "img", "images/generations", IMAGE_PRICE),
    Route("moderations", "/v1/moderations", "mod", "moderations", 0.0),
    Route("speech", "/v1/audio/speech", "tts", "audio/speech", len(SPOKEN) * PER_CHARACTER),
    Route("transcription", "/v1/audio/transcriptions", "whisper", "audio/transcriptions", SECONDS * PER_SECOND,
          upload=True),
    Route("translation", "/v1/audio/translations", "translate", "audio/translations", SECONDS * PER_SECOND,
          upload=True),
    Route("rerank", "/v1/rerank", "rerank", "rerank", PER_QUERY),
]
BY_NAME = {route.name: route for route in ROUTES}


@pytest.fixture(scope="module")
def media() -> Iterator[MediaUpstream]:
    fake = MediaUpstream("limits").start()
    yield fake
    fake.stop()


def entries(suffix: str, media: MediaUpstream, upstream: FakeUpstream, **limits: Any) -> list[dict[str, Any]]:
    return [
        deployment(f"img{suffix}", upstream.base_url, output_cost_per_image=IMAGE_PRICE,
                   model_info={"mode": "image_generation"}, **limits),
        deployment(f"mod{suffix}", upstream.base_url, model_info={"mode": "moderation"}, **limits),
        deployment(f"tts{suffix}", media.base_url, model="openai/tts-1", input_cost_per_character=PER_CHARACTER,
                   **limits),
        deployment(f"whisper{suffix}", media.base_url, model="openai/whisper-1", input_cost_per_second=PER_SECOND,
                   **limits),
        deployment(f"translate{suffix}", media.base_url, model="openai/whisper-1",
                   input_cost_per_second=PER_SECOND, **limits),
        deployment(f"rerank{suffix}", media.root_url, model="cohere/rerank-v3.5", input_cost_per_query=PER_QUERY,
                   **limits),
    ]


def media_gateway(media: MediaUpstream, upstream: FakeUpstream, **settings: Any) -> Gateway:
    return Gateway({
        "model_list": entries("", media, upstream) + entries("-rpm", media, upstream, rpm=2),
        "general_settings": {"master_key": MASTER}, **settings,
    })


@pytest.fixture(scope="module")
def gateway(media: MediaUpstream, upstream: FakeUpstream) -> Iterator[Gateway]:
    with media_gateway(media, upstream) as gw:
        yield gw


@pytest.fixture(scope="module")
async def redis_gateway(media: MediaUpstream, upstream: FakeUpstream, redis_base: str) -> AsyncIterator[Gateway]:
    """The same, with its limits and budgets kept in Redis: admitted by the one-round-trip script."""
    async with scratch_prefix(redis_base) as prefix:
        with media_gateway(media, upstream, router_settings={"redis_url": redis_base},
                           gateway_settings={"redis_key_prefix": prefix}) as gw:
            yield gw


def upstream_calls(route: Route, media: MediaUpstream, upstream: FakeUpstream) -> int:
    """Requests of this route's kind its upstream has had."""
    if route.upload:
        return sum(1 for u in media.uploads if u.path == route.path)
    if route.call_type in ("audio/speech", "rerank"):
        return sum(1 for c in media.calls if c.path == route.path)
    return sum(1 for s in upstream.seen if s.path == route.path)


def form(model: str) -> tuple[bytes, str]:
    """A multipart form with the model first and the audio after it, as openai-python sends the fields."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    return head + AUDIO + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def call(http: aiohttp.ClientSession, gw: Gateway, route: Route, key: str, model: str | None = None,
               request_id: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": request_id or uuid.uuid4().hex}
    model = model or route.group
    if route.upload:
        body, headers["Content-Type"] = form(model)
    else:
        body, headers["Content-Type"] = orjson.dumps(route.payload(model)), "application/json"
    async with http.post(f"{gw.url}{route.path}", data=body, headers=headers) as r:
        raw = await r.read()
        return r.status, orjson.loads(raw) if r.content_type == "application/json" else raw


async def held_upload(http: aiohttp.ClientSession, gw: Gateway, route: Route, key: str,
                      request_id: str) -> tuple[int, Any]:
    """An upload whose client sends the form's head and the first 64 kB of audio, then holds the rest
    until it has the gateway's answer: an answer that needed the whole upload never comes."""
    body, content_type = form(route.group)
    answered = asyncio.Event()
    cut = body.index(AUDIO[:64]) + (64 << 10)

    async def chunks() -> AsyncIterator[bytes]:
        yield body[:cut]
        await answered.wait()
        yield body[cut:]

    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": request_id, "Content-Type": content_type}
    async with asyncio.timeout(10):
        async with http.post(f"{gw.url}{route.path}", data=chunks(), headers=headers) as r:
            answered.set()
            return r.status, await r.json()


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    return await new_virtual_key(http, gw, ADMIN, **fields)


async def key_spend(http: aiohttp.ClientSession, gw: Gateway, key: str) -> float:
    async with http.get(f"{gw.url}/key/info", params={"key": key}, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        spend: float = (await r.json())["info"]["spend"]
        return spend


async def until_spend(http: aiohttp.ClientSession, gw: Gateway, key: str, expected: float) -> None:
    """The first request's cost is settled (after its answer is out) before the next is sent."""
    for _ in range(200):
        if await key_spend(http, gw, key) == pytest.approx(expected, rel=1e-9, abs=1e-12):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"key spend is {await key_spend(http, gw, key)}, not {expected}")


def assert_openai_error(body: Any, kind: str) -> None:
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["message"], body
    assert error["type"] == kind and error["code"] == "429", body


ROUTE_NAMES = [route.name for route in ROUTES]


@pytest.mark.parametrize("name", ROUTE_NAMES)
@pytest.mark.parametrize("limit", ["key", "deployment"])
async def test_third_request_in_a_minute_is_refused(gateway: Gateway, media: MediaUpstream, upstream: FakeUpstream,
                                                     http: aiohttp.ClientSession, name: str, limit: str) -> None:
    """rpm 2 on the key, or on the only deployment of the group: two answers, then OpenAI's 429, which
    never reaches the upstream and is charged nothing."""
    route = BY_NAME[name]
    key = await new_key(http, gateway, rpm_limit=2) if limit == "key" else MASTER
    model = route.group if limit == "key" else f"{route.group}-rpm"
    before = upstream_calls(route, media, upstream)
    served_id = uuid.uuid4().hex
    results = [await call(http, gateway, route, key, model, served_id if i == 0 else None) for i in range(2)]
    assert [status for status, _ in results] == [200, 200], results
    refused_id = uuid.uuid4().hex
    status, body = await call(http, gateway, route, key, model, refused_id)
    assert status == 429
    assert_openai_error(body, "rate_limit_error")
    assert upstream_calls(route, media, upstream) == before + 2
    served = await spend_record(http, gateway, served_id, ADMIN)
    assert served["call_type"] == route.call_type and served["status"] == "success"
    assert served["spend"] == pytest.approx(route.cost, rel=1e-9)
    refused = await spend_record(http, gateway, refused_id, ADMIN)
    assert refused["status"] == "failure" and refused["spend"] == 0
    if limit == "key":
        await until_spend(http, gateway, key, 2 * route.cost)


@pytest.mark.parametrize("name", ROUTE_NAMES)
async def test_a_spent_budget_refuses_the_next_request(gateway: Gateway, media: MediaUpstream,
                                                       upstream: FakeUpstream, http: aiohttp.ClientSession,
                                                       name: str) -> None:
    """A key whose max_budget is one request's cost: that request is served and charged; the next is
    refused as chat's are (429 budget_exceeded), is not sent upstream, and costs nothing."""
    await spent_budget_refuses(gateway, media, upstream, http, BY_NAME[name])


@pytest.mark.parametrize("name", ROUTE_NAMES)
async def test_a_spent_budget_in_redis_refuses_the_next_request(redis_gateway: Gateway, media: MediaUpstream,
                                                                upstream: FakeUpstream, http: aiohttp.ClientSession,
                                                                name: str) -> None:
    """The same with the budget in Redis, checked by the one script that admits a request."""
    await spent_budget_refuses(redis_gateway, media, upstream, http, BY_NAME[name])


async def spent_budget_refuses(gateway: Gateway, media: MediaUpstream, upstream: FakeUpstream,
                               http: aiohttp.ClientSession, route: Route) -> None:
    spender = route if route.cost > 0 else BY_NAME["images"]
    key = await new_key(http, gateway, max_budget=spender.cost)
    served_id = uuid.uuid4().hex
    status, body = await call(http, gateway, spender, key, request_id=served_id)
    assert status == 200, body
    served = await spend_record(http, gateway, served_id, ADMIN)
    assert served["call_type"] == spender.call_type and served["status"] == "success"
    assert served["spend"] == pytest.approx(spender.cost, rel=1e-9) and served["spend"] > 0
    await until_spend(http, gateway, key, spender.cost)

    before = upstream_calls(route, media, upstream)
    refused_id = uuid.uuid4().hex
    if route.upload:
        status, body = await held_upload(http, gateway, route, key, refused_id)
    else:
        status, body = await call(http, gateway, route, key, request_id=refused_id)
    assert status == 429, body
    assert_openai_error(body, "budget_exceeded")
    assert "Budget has been exceeded" in body["error"]["message"]
    assert upstream_calls(route, media, upstream) == before
    refused = await spend_record(http, gateway, refused_id, ADMIN)
    assert refused["status"] == "failure" and refused["spend"] == 0
    assert refused["call_type"] == route.call_type
    await asyncio.sleep(0.2)
    assert await key_spend(http, gateway, key) == pytest.approx(spender.cost, rel=1e-9)
