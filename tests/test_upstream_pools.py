"""Upstream pools per deployment: max_parallel_requests bounds the connections one deployment
gets while others are unaffected, and TLS is verified unless the deployment says otherwise."""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from tests.harness import Gateway, deployment, run_cli

MESSAGES = [{"role": "user", "content": "hi"}]
PATIENCE = 10.0


class CountingUpstream:
    """Answers chat after `release` is set, counting per model the requests it holds at once and
    the connections they came on."""

    def __init__(self) -> None:
        self.active: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.connections: dict[str, set[int]] = defaultdict(set)
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, tls: ssl.SSLContext | None = None) -> CountingUpstream:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def base_url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    async def chat(self, request: web.Request) -> web.Response:
        model = (await request.json())["model"]
        self.active[model] += 1
        self.peak[model] = max(self.peak[model], self.active[model])
        self.connections[model].add(id(request.transport))
        try:
            await self.release.wait()
        finally:
            self.active[model] -= 1
        return web.json_response({"id": "c", "object": "chat.completion", "model": model, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]})

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def counting() -> AsyncIterator[CountingUpstream]:
    upstream = await CountingUpstream().start()
    yield upstream
    await upstream.stop()


async def chat(http: aiohttp.ClientSession, gw: Gateway, model: str) -> tuple[int, Any]:
    async with http.post(f"{gw.url}/v1/chat/completions", json={"model": model, "messages": MESSAGES}) as r:
        return r.status, await r.json()


async def until(predicate: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_pool_of_two_holds_two_connections_and_leaves_others_alone(
        counting: CountingUpstream, http: aiohttp.ClientSession) -> None:
    config = {"model_list": [deployment("pooled", counting.base_url(), max_parallel_requests=2),
                             deployment("free", counting.base_url())]}
    with Gateway(config) as gw:
        calls = [asyncio.ensure_future(chat(http, gw, model)) for model in ("pooled", "free") for _ in range(5)]
        # Every "free" request reaches the upstream at once; "pooled" ones two at a time.
        await until(lambda: counting.active["free-upstream"] == 5 and counting.active["pooled-upstream"] == 2)
        counting.release.set()
        assert [status for status, _ in await asyncio.gather(*calls)] == [200] * 10
    assert counting.peak["pooled-upstream"] == 2 and len(counting.connections["pooled-upstream"]) <= 2
    assert counting.peak["free-upstream"] == 5


def test_a_pool_size_must_be_positive() -> None:
    result = run_cli({"model_list": [deployment("bad", "http://127.0.0.1:9/v1", max_parallel_requests=0)]})
    assert result.returncode == 2 and "model_list[0].litellm_params.max_parallel_requests" in result.stderr


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_upstream(authority: trustme.CA) -> AsyncIterator[CountingUpstream]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    upstream = await CountingUpstream().start(context)
    upstream.release.set()
    yield upstream
    await upstream.stop()


async def test_tls_is_verified_unless_told_otherwise(tls_upstream: CountingUpstream, authority: trustme.CA,
                                                     tmp_path: Path, http: aiohttp.ClientSession) -> None:
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    https = tls_upstream.base_url("https")
    config = {"model_list": [deployment("verified", https),
                             deployment("unverified", https, ssl_verify=False),
                             deployment("own-ca", https, ssl_verify=str(ca_file))]}
    with Gateway(config) as gw:
        status, body = await chat(http, gw, "verified")
        assert status == 502 and body["error"]["type"] == "api_connection_error"
        message = body["error"]["message"]
        assert "TLS certificate that could not be verified" in message and "ssl_verify" in message
        assert (await chat(http, gw, "unverified"))[0] == 200
        assert (await chat(http, gw, "own-ca"))[0] == 200


async def test_litellm_settings_ssl_verify_applies_to_every_deployment(tls_upstream: CountingUpstream,
                                                                       http: aiohttp.ClientSession) -> None:
    config = {"model_list": [deployment("any", tls_upstream.base_url("https"))],
              "litellm_settings": {"ssl_verify": False}}
    with Gateway(config) as gw:
        assert (await chat(http, gw, "any"))[0] == 200


def test_a_ca_bundle_that_is_not_there_stops_the_start() -> None:
    result = run_cli({"model_list": [deployment("x", "https://127.0.0.1:9/v1", ssl_verify="/nonexistent/ca.pem")]})
    assert result.returncode == 2 and "model_list[0].litellm_params.ssl_verify" in result.stderr
