"""The chain's order, written down in gateway/plugin.py, checked over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.plugin import Chain, describe
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, run_cli
from tests.recording_plugins import Recorder, RequestOnly

PATIENCE = 10.0


def recorder(name: str, log: Path) -> dict[str, Any]:
    return {"name": name, "path": "tests.recording_plugins:Recorder", "settings": {"name": name, "log": str(log)}}


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chain") / "trace.log"


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, trace_file: Path) -> Iterator[Gateway]:
    config = {
        "model_list": [deployment("chat", upstream.base_url)],
        "gateway_settings": {"plugins": [{"name": "auth", "enabled": False}, "model_access",
                                         recorder("A", trace_file), recorder("B", trace_file),
                                         recorder("C", trace_file), "model_alias"]},
    }
    with Gateway(config) as gw:
        yield gw


def trace(path: Path, request_id: str) -> list[str]:
    return [" ".join(line.split()[1:]) for line in path.read_text().splitlines() if line.startswith(request_id)]


async def settled(path: Path, request_id: str, lines: int) -> list[str]:
    """on_settle runs before the last bytes of an answer, but the trace file may trail the client: wait for it."""
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while len(found := trace(path, request_id)) < lines and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    return found


async def send(http: aiohttp.ClientSession, gw: Gateway, **extra: Any) -> tuple[str, aiohttp.ClientResponse, bytes]:
    request_id = uuid.uuid4().hex
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **extra}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers={"X-Request-ID": request_id}) as r:
        return request_id, r, await r.read()


async def test_request_in_order_response_and_complete_in_reverse(gateway: Gateway, trace_file: Path,
                                                                 http: aiohttp.ClientSession) -> None:
    request_id, response, _ = await send(http, gateway)
    assert response.status == 200
    assert response.headers["x-trace"] == "C B A"
    assert await settled(trace_file, request_id, 6) == ["A request 0", "B request 0", "C request 0",
                                                        "C settle 200", "B settle 200", "A settle 200"]


async def test_short_circuit_completes_only_the_plugins_reached(gateway: Gateway, trace_file: Path,
                                                                http: aiohttp.ClientSession,
                                                                upstream: FakeUpstream) -> None:
    before = len(upstream.seen)
    request_id, response, body = await send(http, gateway, user="answer:B")
    assert response.status == 418 and b"answered_by" in body
    assert await settled(trace_file, request_id, 4) == ["A request 0", "B request 0", "B settle 418",
                                                        "A settle 418"]
    assert len(upstream.seen) == before


async def test_a_plugin_error_still_completes_those_reached(gateway: Gateway, trace_file: Path,
                                                            http: aiohttp.ClientSession) -> None:
    request_id, response, body = await send(http, gateway, user="fail:B")
    assert response.status == 403 and b"B says no" in body
    assert response.headers["x-trace"] == "B A"
    assert await settled(trace_file, request_id, 4) == ["A request 0", "B request 0", "B settle 403",
                                                        "A settle 403"]


async def test_upstream_error_completes_every_plugin(gateway: Gateway, trace_file: Path,
                                                     http: aiohttp.ClientSession) -> None:
    request_id, response, _ = await send(http, gateway, fake={"status": 500, "body": "boom"})
    assert response.status == 500
    assert (await settled(trace_file, request_id, 6))[-3:] == ["C settle 500", "B settle 500",
                                                               "A settle 500"]


async def test_client_leaving_mid_stream_completes_every_plugin(gateway: Gateway, trace_file: Path,
                                                                http: aiohttp.ClientSession,
                                                                upstream: FakeUpstream) -> None:
    request_id = uuid.uuid4().hex
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "fake": {"chunks": 300, "delay": 0.2}}
    response = await http.post(f"{gateway.url}/v1/chat/completions", json=body,
                               headers={"X-Request-ID": request_id})
    await response.content.readuntil(b"\n\n")
    response.close()
    seen = upstream.seen[-1]
    await upstream.until(lambda: seen.outcome == "cancelled", PATIENCE)
    assert (await settled(trace_file, request_id, 6))[3:] == ["C settle 499", "B settle 499", "A settle 499"]


def test_idle_phases_are_left_out_of_the_chain(tmp_path: Path) -> None:
    chain = Chain([RequestOnly(None, {}), Recorder(None, {"name": "R", "log": str(tmp_path / "x")})])
    phases = describe(chain)
    assert phases["on_request"] == ["request-only", "R"]
    assert phases["on_response_headers"] == ["R"]
    assert phases["on_settle"] == ["R"]


@pytest.mark.parametrize(("plugins", "words"), [
    ([{"name": "nope", "path": "no.such.module:Plugin"}], "gateway_settings.plugins[0]"),
    ([{"name": "x", "path": "tests.recording_plugins:Path"}], "not a gateway.plugin.Plugin"),
    (["not_a_builtin"], "not_a_builtin"),
    (["auth", "auth"], "more than once"),
])
def test_bad_plugin_lists_stop_the_start(plugins: list[Any], words: str) -> None:
    result = run_cli({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
                      "gateway_settings": {"plugins": plugins}})
    assert result.returncode == 2
    assert words in result.stderr
