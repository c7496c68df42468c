"""Which deployment answers: strategies, wildcards, aliases, path prefixes, client address and request id.

Everything runs over real HTTP against a gateway process in front of fake upstreams.
A request is traced to the deployment that served it by the `x-litellm-model-id`
header (every deployment here has a `model_info.id`) and to the upstream that saw
it by a `tag` in its `fake` object, which the fakes ignore and the gateway forwards.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.fakes import FakeUpstream, Seen
from tests.harness import ROOT, Gateway, deployment, run_cli

CHAT = {"messages": [{"role": "user", "content": "hello"}]}
# Bounds on waits for events the test itself causes; never a measure of speed.
PATIENCE = 10.0


@dataclass
class SlowUpstream(FakeUpstream):
    """A fake upstream that answers every chat request only after `latency` seconds."""

    latency: float = 0.5

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(self.latency)
        return await super()._chat(request)


def ided(name: str, base_url: str, id_: str, **params: Any) -> dict[str, Any]:
    return deployment(name, base_url, model_info={"id": id_}, **params)


def new_tag() -> str:
    return uuid.uuid4().hex


def received(upstream: FakeUpstream, tag: str) -> list[Seen]:
    """Requests `upstream` saw that carry `tag` in their `fake` object."""
    found = []
    for seen in list(upstream.seen):
        fake = seen.body.get("fake")
        if isinstance(fake, dict) and fake.get("tag") == tag:
            found.append(seen)
    return found


async def chat(http: aiohttp.ClientSession, url: str, model: str, tag: str = "", *,
               headers: dict[str, str] | None = None, **extra: Any) -> tuple[int, Any, Any]:
    body = {"model": model, **CHAT, "fake": {"tag": tag}, **extra}
    async with http.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json",
                                                                **(headers or {})}) as r:
        return r.status, orjson.loads(await r.read()), r.headers


async def served_by(http: aiohttp.ClientSession, url: str, model: str, tag: str, count: int,
                    concurrency: int = 16) -> Counter[str]:
    """Send `count` chat requests, `concurrency` at a time; how many each deployment id answered."""
    limit = asyncio.Semaphore(concurrency)

    async def one() -> str:
        async with limit:
            status, body, headers = await chat(http, url, model, tag)
        assert status == 200, body
        return str(headers["x-litellm-model-id"])

    return Counter(await asyncio.gather(*(one() for _ in range(count))))


async def access_line(gateway: Gateway, request_id: str) -> str:
    """The gateway's access log line for `request_id`, once it is written."""
    deadline = time.monotonic() + PATIENCE
    while True:
        for line in gateway.log().splitlines():
            if f"gateway.access: {request_id} " in line:
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no access line for {request_id}:\n{gateway.log()[-3000:]}")
        await asyncio.sleep(0.02)


# --- A simple-shuffle gateway with weights, wildcards and aliases -----------------------------------------------


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, upstream_b: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "model_list": [
            ided("weighted", upstream.base_url, "w-alpha", weight=3),
            ided("weighted", upstream_b.base_url, "w-beta", weight=1),
            # No weight: rpm decides, and here it favours beta.
            ided("by-rpm", upstream.base_url, "r-alpha", rpm=100),
            ided("by-rpm", upstream_b.base_url, "r-beta", rpm=300),
            {"model_name": "*", "model_info": {"id": "any"},
             "litellm_params": {"model": "openai/*", "api_base": upstream.base_url, "api_key": "k"}},
            {"model_name": "openai/*", "model_info": {"id": "openai-any"},
             "litellm_params": {"model": "openai/*", "api_base": upstream_b.base_url, "api_key": "k"}},
            ided("openai/exact", upstream.base_url, "exact", model="openai/exact-target"),
            ided("target", upstream.base_url, "target"),
        ],
        "router_settings": {
            "routing_strategy": "simple-shuffle",
            "model_group_alias": {"nick": "target", "secret": {"model": "target", "hidden": True}},
        },
    }
    with Gateway(config) as gw:
        yield gw


async def test_simple_shuffle_follows_weights(gateway: Gateway, upstream: FakeUpstream,
                                              http: aiohttp.ClientSession) -> None:
    tag = new_tag()
    counts = await served_by(http, f"{gateway.url}/v1/chat/completions", "weighted", tag, 400)
    assert set(counts) <= {"w-alpha", "w-beta"}
    # 3:1 gives alpha 300 of 400 on average, sd 8.7: these bounds are about 6 sd either side.
    assert 250 <= counts["w-alpha"] <= 350, counts
    assert len(received(upstream, tag)) == counts["w-alpha"]


async def test_simple_shuffle_uses_rpm_when_weight_is_missing(gateway: Gateway, upstream_b: FakeUpstream,
                                                              http: aiohttp.ClientSession) -> None:
    tag = new_tag()
    counts = await served_by(http, f"{gateway.url}/v1/chat/completions", "by-rpm", tag, 400)
    assert set(counts) <= {"r-alpha", "r-beta"}
    # rpm 100:300 gives beta 300 of 400 on average; an even split (rpm ignored) would give 200.
    assert 250 <= counts["r-beta"] <= 350, counts
    assert len(received(upstream_b, tag)) == counts["r-beta"]


@pytest.mark.parametrize("requested", ["llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct", "a/b/c:latest"])
async def test_catch_all_wildcard_passes_the_name_through(gateway: Gateway, upstream: FakeUpstream,
                                                          http: aiohttp.ClientSession, requested: str) -> None:
    tag = new_tag()
    status, body, headers = await chat(http, f"{gateway.url}/v1/chat/completions", requested, tag)
    assert status == 200, body
    assert headers["x-litellm-model-id"] == "any"
    assert [s.body["model"] for s in received(upstream, tag)] == [requested]


@pytest.mark.parametrize(("requested", "upstream_model"), [
    ("openai/gpt-4o", "gpt-4o"),
    ("openai/org/model-x", "org/model-x"),
])
async def test_provider_wildcard_strips_its_prefix_and_beats_the_catch_all(
        gateway: Gateway, upstream_b: FakeUpstream, http: aiohttp.ClientSession, requested: str,
        upstream_model: str) -> None:
    tag = new_tag()
    status, body, headers = await chat(http, f"{gateway.url}/v1/chat/completions", requested, tag)
    assert status == 200, body
    assert headers["x-litellm-model-id"] == "openai-any"
    assert [s.body["model"] for s in received(upstream_b, tag)] == [upstream_model]


async def test_exact_group_beats_wildcards(gateway: Gateway, upstream: FakeUpstream, upstream_b: FakeUpstream,
                                           http: aiohttp.ClientSession) -> None:
    tag = new_tag()
    status, body, headers = await chat(http, f"{gateway.url}/v1/chat/completions", "openai/exact", tag)
    assert status == 200, body
    assert headers["x-litellm-model-id"] == "exact"
    assert headers["x-litellm-model-group"] == "openai/exact"
    assert [s.body["model"] for s in received(upstream, tag)] == ["exact-target"]
    assert received(upstream_b, tag) == []


@pytest.mark.parametrize("alias", ["nick", "secret"])
async def test_model_group_alias_routes_to_its_target(gateway: Gateway, upstream: FakeUpstream,
                                                      http: aiohttp.ClientSession, alias: str) -> None:
    tag = new_tag()
    status, body, headers = await chat(http, f"{gateway.url}/v1/chat/completions", alias, tag)
    assert status == 200, body
    # Without the alias the catch-all would have sent the alias name through unchanged.
    assert headers["x-litellm-model-id"] == "target"
    assert headers["x-litellm-model-group"] == "target"
    assert [s.body["model"] for s in received(upstream, tag)] == ["target-upstream"]


async def test_model_list_shows_aliases_unless_hidden(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/v1/models") as r:
        assert r.status == 200
        ids = [m["id"] for m in (await r.json())["data"]]
    assert "nick" in ids
    assert "target" in ids
    assert "secret" not in ids
    assert len(ids) == len(set(ids))


async def test_request_id_is_echoed_when_sent(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    request_id = f"req-{new_tag()}"
    status, _, headers = await chat(http, f"{gateway.url}/v1/chat/completions", "target",
                                    headers={"X-Request-ID": request_id})
    assert status == 200
    assert headers["X-Request-ID"] == request_id
    assert headers["x-litellm-call-id"] == request_id


async def test_request_id_is_generated_when_missing(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    ids = []
    for _ in range(2):
        status, _, headers = await chat(http, f"{gateway.url}/v1/chat/completions", "target")
        assert status == 200
        ids.append(headers["X-Request-ID"])
        assert headers["x-litellm-call-id"] == ids[-1]
    assert all(len(i) >= 16 and i.isprintable() for i in ids), ids
    assert ids[0] != ids[1]


async def test_forwarded_for_is_ignored_without_trusted_proxies(gateway: Gateway,
                                                                http: aiohttp.ClientSession) -> None:
    request_id = f"xff-{new_tag()}"
    status, _, _ = await chat(http, f"{gateway.url}/v1/chat/completions", "target",
                              headers={"X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.7"})
    assert status == 200
    line = await access_line(gateway, request_id)
    assert re.search(r" client=127\.0\.0\.1(\s|$)", line), line


# --- Other routing strategies ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def least_busy(upstream: FakeUpstream, upstream_b: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "model_list": [ided("pair", upstream.base_url, "alpha"), ided("pair", upstream_b.base_url, "beta")],
        "router_settings": {"routing_strategy": "least-busy"},
    }
    with Gateway(config) as gw:
        yield gw


async def test_least_busy_avoids_the_deployment_holding_a_stream(least_busy: Gateway, upstream: FakeUpstream,
                                                                 upstream_b: FakeUpstream,
                                                                 http: aiohttp.ClientSession) -> None:
    gate = f"busy-{new_tag()}"
    url = f"{least_busy.url}/v1/chat/completions"
    held_body = orjson.dumps({"model": "pair", **CHAT, "stream": True, "fake": {"gate": gate, "chunks": 2}})
    try:
        async with http.post(url, data=held_body) as held:
            assert held.status == 200
            # The first event is through: the upstream now holds the stream until the gate opens.
            first = await asyncio.wait_for(held.content.readuntil(b"\n\n"), PATIENCE)
            assert first.startswith(b"data: {")
            busy = held.headers["x-litellm-model-id"]
            others = [await chat(http, url, "pair") for _ in range(20)]
            assert [status for status, _, _ in others] == [200] * 20
            chosen = Counter(headers["x-litellm-model-id"] for _, _, headers in others)
            assert chosen == Counter({"beta" if busy == "alpha" else "alpha": 20})
            upstream.open_gate(gate)
            upstream_b.open_gate(gate)
            rest = await asyncio.wait_for(held.read(), PATIENCE)
        assert rest.endswith(b"data: [DONE]\n\n")
    finally:
        upstream.open_gate(gate)
        upstream_b.open_gate(gate)


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[SlowUpstream]:
    fake = SlowUpstream("slow", latency=0.5).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def latency_based(upstream: FakeUpstream, slow_upstream: SlowUpstream) -> Iterator[Gateway]:
    config = {
        "model_list": [ided("pair", upstream.base_url, "fast"), ided("pair", slow_upstream.base_url, "slow")],
        "router_settings": {"routing_strategy": "latency-based-routing"},
    }
    with Gateway(config) as gw:
        yield gw


async def test_latency_based_routing_settles_on_the_fast_deployment(latency_based: Gateway, upstream: FakeUpstream,
                                                                    slow_upstream: SlowUpstream,
                                                                    http: aiohttp.ClientSession) -> None:
    tag = new_tag()
    url = f"{latency_based.url}/v1/chat/completions"
    chosen = []
    for _ in range(20):
        status, body, headers = await chat(http, url, "pair", tag)
        assert status == 200, body
        chosen.append(headers["x-litellm-model-id"])
    # Each deployment is tried once so that it has a latency; from then on the fast one wins.
    assert sorted(chosen[:2]) == ["fast", "slow"], chosen
    assert chosen[2:] == ["fast"] * 18, chosen
    assert len(received(slow_upstream, tag)) == 1
    assert len(received(upstream, tag)) == 19


@pytest.fixture(scope="module")
def cost_and_usage(upstream: FakeUpstream) -> Iterator[tuple[Gateway, Gateway]]:
    priced = [ided("pair", upstream.base_url, "dear", input_cost_per_token=1e-3, output_cost_per_token=2e-3),
              ided("pair", upstream.base_url, "cheap", input_cost_per_token=1e-9, output_cost_per_token=2e-9)]
    even = [ided("pair", upstream.base_url, "left"), ided("pair", upstream.base_url, "right")]
    with Gateway({"model_list": priced, "router_settings": {"routing_strategy": "cost-based-routing"}}) as cost, \
            Gateway({"model_list": even, "router_settings": {"routing_strategy": "usage-based-routing-v2"}}) as usage:
        yield cost, usage


async def test_cost_based_routing_sends_everything_to_the_cheapest(
        cost_and_usage: tuple[Gateway, Gateway], http: aiohttp.ClientSession) -> None:
    cost, _ = cost_and_usage
    chosen = [(await chat(http, f"{cost.url}/v1/chat/completions", "pair"))[2]["x-litellm-model-id"]
              for _ in range(12)]
    assert chosen == ["cheap"] * 12


async def test_usage_based_routing_goes_to_the_deployment_with_fewer_tokens_this_minute(
        cost_and_usage: tuple[Gateway, Gateway], http: aiohttp.ClientSession) -> None:
    """Each answer uses as many tokens: after one goes to either deployment (a tie), the next goes
    to the other, so every pair of requests covers both (one pair may not, should the minute turn)."""
    _, usage = cost_and_usage
    chosen = [(await chat(http, f"{usage.url}/v1/chat/completions", "pair"))[2]["x-litellm-model-id"]
              for _ in range(16)]
    split = [set(chosen[i:i + 2]) == {"left", "right"} for i in range(0, 16, 2)]
    assert split.count(False) <= 1, chosen


@pytest.mark.parametrize("strategy", ["usage-based-routing", "usage-based-routing-v2", "cost-based-routing",
                                      "least-busy", "latency-based-routing", "simple-shuffle"])
def test_every_litellm_routing_strategy_starts(strategy: str) -> None:
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
              "router_settings": {"routing_strategy": strategy}}
    with Gateway(config) as gw:
        assert "serving 1 deployments" in gw.log()


def test_an_unknown_routing_strategy_names_the_valid_ones() -> None:
    result = run_cli({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
                      "router_settings": {"routing_strategy": "round-robin"}}, timeout=10)
    assert result.returncode == 2
    assert ("router_settings.routing_strategy: Invalid enum value 'round-robin'; valid values: cost-based-routing, "
            "latency-based-routing, least-busy, simple-shuffle, usage-based-routing, usage-based-routing-v2"
            in result.stderr), result.stderr


# --- Path prefixes -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefixed(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [ided("chat", upstream.base_url, "chat")],
              "gateway_settings": {"path_prefixes": ["/olla/litellm"]}}
    with Gateway(config, env={"SERVER_ROOT_PATH": "/genai"}) as gw:
        yield gw


@pytest.mark.parametrize("prefix", ["", "/olla/litellm", "/genai"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
async def test_chat_is_served_under_every_prefix(prefixed: Gateway, upstream: FakeUpstream,
                                                 http: aiohttp.ClientSession, prefix: str, path: str) -> None:
    tag = new_tag()
    status, body, headers = await chat(http, f"{prefixed.url}{prefix}{path}", "chat", tag)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "alpha says hi"
    assert [s.body["model"] for s in received(upstream, tag)] == ["chat-upstream"]


@pytest.mark.parametrize("prefix", ["", "/olla/litellm", "/genai"])
async def test_models_and_liveliness_are_served_under_every_prefix(prefixed: Gateway, http: aiohttp.ClientSession,
                                                                   prefix: str) -> None:
    async with http.get(f"{prefixed.url}{prefix}/v1/models") as r:
        assert r.status == 200
        assert [m["id"] for m in (await r.json())["data"]] == ["chat"]
    async with http.get(f"{prefixed.url}{prefix}/health/liveliness") as r:
        assert r.status == 200
        assert await r.json() == "I'm alive!"


@pytest.mark.parametrize("path", ["/olla/v1/models", "/litellm/v1/models", "/genai/olla/litellm/v1/models"])
async def test_other_prefixes_are_not_served(prefixed: Gateway, http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(f"{prefixed.url}{path}") as r:
        assert r.status == 404
        error = (await r.json())["error"]
    assert isinstance(error["code"], str)


# --- The llama-swap example config, as shipped -------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_swap(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = (ROOT / "configs" / "llama-swap.yaml").read_text()
    with Gateway(config, env={"LLAMA_SWAP_API_BASE": upstream.base_url}) as gw:
        yield gw


@pytest.mark.parametrize(("requested", "upstream_model", "group"), [
    ("gpt-4", "qwen3-30b-a3b", "qwen3-30b-a3b"),
    ("gpt-3.5-turbo", "qwen2.5-14b-instruct", "qwen2.5-14b-instruct"),
    ("qwen3-30b-a3b", "qwen3-30b-a3b", "qwen3-30b-a3b"),
    ("llama-3.1-8b", "llama-3.1-8b", "llama-3.1-8b"),
])
@pytest.mark.parametrize("prefix", ["", "/olla/litellm"])
async def test_llama_swap_example(llama_swap: Gateway, upstream: FakeUpstream, http: aiohttp.ClientSession,
                                  requested: str, upstream_model: str, group: str, prefix: str) -> None:
    tag = new_tag()
    status, body, headers = await chat(http, f"{llama_swap.url}{prefix}/v1/chat/completions", requested, tag)
    assert status == 200, body
    assert [s.body["model"] for s in received(upstream, tag)] == [upstream_model]
    assert headers["X-Olla-model-group"] == group
    assert headers["X-Olla-call-id"] == headers["X-Request-ID"]
    assert "X-Olla-model-id" in headers
    assert not [name for name in headers if name.lower().startswith("x-litellm-")], list(headers)


# --- Client address behind trusted proxies -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def behind_proxy(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [ided("chat", upstream.base_url, "chat")],
              "gateway_settings": {"trusted_proxies": ["127.0.0.1/32"]}}
    with Gateway(config) as gw:
        yield gw


@pytest.mark.parametrize(("forwarded_for", "client"), [
    ("203.0.113.7", "203.0.113.7"),
    # A client may send its own header: only the hop the trusted proxy appended counts.
    ("6.6.6.6, 203.0.113.7", "203.0.113.7"),
    # Trusted hops are skipped from the right.
    ("203.0.113.7, 127.0.0.1", "203.0.113.7"),
    (None, "127.0.0.1"),
])
async def test_client_address_from_trusted_proxy(behind_proxy: Gateway, http: aiohttp.ClientSession,
                                                 forwarded_for: str | None, client: str) -> None:
    request_id = f"xff-{new_tag()}"
    headers = {"X-Request-ID": request_id}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    status, _, _ = await chat(http, f"{behind_proxy.url}/v1/chat/completions", "chat", headers=headers)
    assert status == 200
    line = await access_line(behind_proxy, request_id)
    assert re.search(rf" client={re.escape(client)}(\s|$)", line), line
