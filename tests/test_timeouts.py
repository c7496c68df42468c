"""A request's own `timeout` / `stream_timeout` (body or x-litellm-* headers) overrides its
deployment's; the gateway keeps it to itself and frees the upstream connection when it fires."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeUpstream, Seen
from tests.harness import Gateway, deployment

MESSAGES = [{"role": "user", "content": "hi"}]
# Far beyond any test: only the request's own timeout can end these early.
FOREVER = 3600


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [deployment("patient", upstream.base_url, timeout=FOREVER, stream_timeout=FOREVER)]}
    with Gateway(config) as gw:
        yield gw


async def post(http: aiohttp.ClientSession, gw: Gateway, headers: dict[str, str] | None = None,
               **body: Any) -> tuple[int, bytes]:
    async with http.post(f"{gw.url}/v1/chat/completions", json={"model": "patient", "messages": MESSAGES, **body},
                         headers=headers) as r:
        return r.status, await r.read()


def seen_with(upstream: FakeUpstream, marker: str) -> Seen:
    return next(s for s in upstream.seen if s.body.get("fake", {}).get("marker") == marker)


@pytest.mark.parametrize("how", ["body", "header"])
async def test_a_request_timeout_cuts_a_hung_upstream(gateway: Gateway, upstream: FakeUpstream,
                                                      http: aiohttp.ClientSession, how: str) -> None:
    marker = uuid.uuid4().hex
    fake = {"hang": FOREVER, "marker": marker}
    if how == "body":
        status, raw = await post(http, gateway, fake=fake, timeout=0.5)
    else:
        status, raw = await post(http, gateway, {"x-litellm-timeout": "0.5"}, fake=fake)
    assert status == 504 and b"timeout_error" in raw
    seen = seen_with(upstream, marker)
    assert "timeout" not in seen.body  # LiteLLM keeps it: it is not the upstream's parameter
    await upstream.until(lambda: seen.outcome == "cancelled")  # and the upstream's connection is let go


async def test_a_request_stream_timeout_ends_a_stalled_stream(gateway: Gateway, upstream: FakeUpstream,
                                                              http: aiohttp.ClientSession) -> None:
    marker, gate = uuid.uuid4().hex, uuid.uuid4().hex
    # One event, then silence until a gate this test never opens.
    status, raw = await post(http, gateway, stream=True, stream_timeout=0.5,
                             fake={"chunks": 3, "gate": gate, "marker": marker})
    assert status == 200
    assert b"patient-upstream" in raw and b'"type":"timeout_error"' in raw
    seen = seen_with(upstream, marker)
    assert "stream_timeout" not in seen.body
    await upstream.until(lambda: seen.outcome == "cancelled")
    upstream.open_gate(gate)


async def test_a_stream_that_never_starts_is_a_504(gateway: Gateway, upstream: FakeUpstream,
                                                  http: aiohttp.ClientSession) -> None:
    marker = uuid.uuid4().hex
    status, raw = await post(http, gateway, {"x-litellm-stream-timeout": "0.5"}, stream=True,
                             fake={"hang": FOREVER, "marker": marker})
    assert status == 504
    await upstream.until(lambda: seen_with(upstream, marker).outcome == "cancelled")


@pytest.mark.parametrize("value", ["soon", -1, 0, True])
async def test_a_timeout_that_is_not_a_duration_is_refused(gateway: Gateway, http: aiohttp.ClientSession,
                                                           value: Any) -> None:
    status, raw = await post(http, gateway, timeout=value)
    assert status == 400 and b'"param":"timeout"' in raw


async def test_the_timeout_header_is_printed_as_litellm_prints_it(gateway: Gateway,
                                                               http: aiohttp.ClientSession) -> None:
    """x-litellm-timeout is LiteLLM's float, on answers and on the failures a timeout causes."""
    async with http.post(f"{gateway.url}/v1/chat/completions", json={"model": "patient", "messages": MESSAGES}) as r:
        assert r.status == 200 and r.headers["x-litellm-timeout"] == f"{float(FOREVER)}"
    async with http.post(f"{gateway.url}/v1/chat/completions", headers={"x-litellm-timeout": "0.25"},
                         json={"model": "patient", "messages": MESSAGES, "mock_timeout": True}) as r:
        assert r.status == 408 and r.headers["x-litellm-timeout"] == "0.25"
