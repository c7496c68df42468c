"""A plugin that raises, in any phase, never corrupts an answer nor costs the request its spend record."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, spend_record

MASTER = "sk-raise-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PATIENCE = 10.0


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [deployment("chat", upstream.base_url, input_cost_per_token=0.001,
                                        output_cost_per_token=0.002)],
              "general_settings": {"master_key": MASTER},
              "gateway_settings": {"plugins": ["auth", "spend", {"name": "raiser",
                                                                 "path": "tests.recording_plugins:Raiser"}]}}
    with Gateway(config) as gw:
        yield gw


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("phase", ["request", "headers", "settle"])
async def test_a_plugin_failure_leaves_a_clean_answer_and_a_record(gateway: Gateway, http: aiohttp.ClientSession,
                                                                   phase: str, stream: bool) -> None:
    request_id = uuid.uuid4().hex
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": stream,
            "user": f"raise:{phase}"}
    async with http.post(f"{gateway.url}/v1/chat/completions", json=body,
                         headers={**ADMIN, "X-Request-ID": request_id}) as r:
        raw = await r.read()  # a body broken mid-chunk would raise here
        status = r.status
    assert b"HTTP/1.1" not in raw
    if phase == "request":
        assert status == 500
        assert orjson.loads(raw)["error"]["type"] == "internal_server_error"
    elif stream:
        assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    else:
        assert status == 200 and orjson.loads(raw)["choices"][0]["message"]["content"] == "alpha says hi"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["metadata"]["status_code"] == status
    if phase != "request":
        assert (record["prompt_tokens"], record["status"]) == (5, "success")
    if phase != "request":
        method = {"headers": "on_response_headers", "settle": "on_settle"}[phase]
        assert f"plugin raiser failed in {method} for {request_id}" in gateway.log()
