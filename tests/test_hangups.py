"""A client that hangs up pays for what it used: at every point of a stream, in every ledger.

Each case closes a raw socket at one point of the answer, then reads back the spend record, the key's
spend, the budget counter (the next answer's `x-litellm-key-spend`) and the tpm bucket (the next answer's
`x-ratelimit-remaining-tokens`). None of it may be zero, and none of it may leave a traceback.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, spend_record

MASTER = "sk-hangup-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PRICE_IN, PRICE_OUT = 0.001, 0.002
TPM = 120  # refills two tokens a second: small enough to see, measured with that slack
PATIENCE = 10.0
MESSAGES = [{"role": "user", "content": "tell me about the sea " * 8}]
PROMPT_ESTIMATE = max(1, len(orjson.dumps(MESSAGES)) // 4)  # the gateway's own rule: four bytes a token
TEXT = "abcdefghij" * 4  # forty characters an event: ten tokens by the same rule
REPORTED = (11, 30, 41)


def chunk(content: str | None, finish: str | None = None) -> str:
    delta = {"content": content} if content is not None else {}
    return "data: " + orjson.dumps({"id": "chatcmpl-h", "object": "chat.completion.chunk", "created": 1,
                                    "model": "m", "choices": [{"index": 0, "delta": delta,
                                                               "finish_reason": finish}]}).decode() + "\n\n"


FRAMES = [chunk(TEXT), chunk(TEXT), chunk(TEXT), chunk(None, "stop"),
          "data: " + orjson.dumps({"id": "chatcmpl-h", "choices": [], "usage": dict(zip(
              ("prompt_tokens", "completion_tokens", "total_tokens"), REPORTED))}).decode() + "\n\n",
          "data: [DONE]\n\n"]


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [deployment("priced", upstream.base_url, input_cost_per_token=PRICE_IN,
                                        output_cost_per_token=PRICE_OUT)],
              "general_settings": {"master_key": MASTER},
              "litellm_settings": {"callbacks": ["prometheus"]}}
    with Gateway(config) as gw:
        yield gw


async def new_key(http: aiohttp.ClientSession, gw: Gateway) -> dict[str, Any]:
    async with http.post(f"{gw.url}/key/generate", json={"max_budget": 100.0, "tpm_limit": TPM},
                         headers=ADMIN) as r:
        assert r.status == 200
        return dict(await r.json())


async def hang_up(gw: Gateway, key: str, request_id: str, fake: dict[str, Any], read_until: bytes | None,
                  upstream: FakeUpstream) -> None:
    """Send a streaming request on a raw socket, read until `read_until` (or until the upstream has the
    request, when None), and close the socket."""
    body = orjson.dumps({"model": "priced", "messages": MESSAGES, "stream": True, "fake": fake})
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    seen_before = len(upstream.seen)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer %s\r\nX-Request-ID: %s\r\nContent-Length: %d\r\n\r\n%s"
                 % (key.encode(), request_id.encode(), len(body), body))
    if read_until is None:
        await upstream.until(lambda: len(upstream.seen) > seen_before, PATIENCE)
    else:
        received = b""
        while read_until not in received:
            piece = await asyncio.wait_for(reader.read(65536), PATIENCE)
            assert piece, f"the stream ended before {read_until!r}"
            received += piece
    writer.close()


async def probe(http: aiohttp.ClientSession, gw: Gateway, key: str) -> tuple[float, int]:
    """(the budget counter before this probe, the tpm bucket's level before it), read from its headers."""
    messages = [{"role": "user", "content": "hi"}]
    async with http.post(f"{gw.url}/v1/chat/completions", json={"model": "priced", "messages": messages},
                         headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status == 200
        headers = r.headers
        await r.read()
    probe_cost = 5 * PRICE_IN + 3 * PRICE_OUT  # the fake upstream's usage for a plain answer
    probe_estimate = len(orjson.dumps(messages)) // 4 + 1
    return (float(headers["x-litellm-key-spend"]) - probe_cost,
            int(headers["x-ratelimit-remaining-tokens"]) + probe_estimate)


async def key_spend(http: aiohttp.ClientSession, gw: Gateway, key: str, at_least: float) -> float:
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while True:
        async with http.get(f"{gw.url}/key/info", params={"key": key}, headers=ADMIN) as r:
            spend = float((await r.json())["info"]["spend"])
        if spend >= at_least - 1e-12 or asyncio.get_running_loop().time() > deadline:
            return spend
        await asyncio.sleep(0.05)


CASES = {
    # name: (fake upstream, what the client reads before it leaves, expected usage, estimated)
    "before-upstream-headers": ({"hang": 30}, None, (PROMPT_ESTIMATE, 0), True),
    "after-the-first-event": ({"frames": FRAMES, "hold": [1, "GATE"]}, TEXT.encode(), (PROMPT_ESTIMATE, 10),
                              True),
    "just-before-the-usage-event": ({"frames": FRAMES, "hold": [4, "GATE"]}, b'"finish_reason":"stop"',
                                    (PROMPT_ESTIMATE, 30), True),
    "after-done-before-the-body-ends": ({"frames": FRAMES, "hold_end": "GATE"}, b"data: [DONE]\n\n",
                                        REPORTED[:2], False),
}


@pytest.mark.parametrize("case", CASES)
async def test_a_client_that_hangs_up_is_charged_in_every_ledger(gateway: Gateway, upstream: FakeUpstream,
                                                                 http: aiohttp.ClientSession, case: str) -> None:
    fake, read_until, (prompt, completion), estimated = CASES[case]
    gate = uuid.uuid4().hex
    fake = orjson.loads(orjson.dumps(fake).replace(b"GATE", gate.encode()))
    key = await new_key(http, gateway)
    request_id = uuid.uuid4().hex
    admitted = time.monotonic()
    await hang_up(gateway, key["key"], request_id, fake, read_until, upstream)
    seen = upstream.seen[-1]
    await upstream.until(lambda: seen.outcome == "cancelled", PATIENCE)
    upstream.open_gate(gate)

    log = await spend_record(http, gateway, request_id, ADMIN)
    cost = prompt * PRICE_IN + completion * PRICE_OUT
    assert (log["prompt_tokens"], log["completion_tokens"]) == (prompt, completion)
    assert log["metadata"]["usage_estimated"] is estimated
    assert log["status"] == "cancelled" and log["metadata"]["status_code"] == 499
    assert log["spend"] == pytest.approx(cost)

    budget_counter, tpm_level = await probe(http, gateway, key["key"])
    assert budget_counter == pytest.approx(cost)
    refilled = (time.monotonic() - admitted) * TPM / 60
    assert TPM - (prompt + completion) <= tpm_level <= min(TPM, TPM - (prompt + completion) + refilled + 1)
    total = cost + 5 * PRICE_IN + 3 * PRICE_OUT
    assert await key_spend(http, gateway, key["key"], total) == pytest.approx(total)

    log_text = gateway.log()
    assert "Traceback" not in log_text
    assert f"{request_id} POST /v1/chat/completions status=499" in log_text


async def test_a_client_that_left_is_not_a_failed_request(gateway: Gateway, upstream: FakeUpstream,
                                                          http: aiohttp.ClientSession) -> None:
    key, request_id, gate = await new_key(http, gateway), uuid.uuid4().hex, uuid.uuid4().hex
    await hang_up(gateway, key["key"], request_id, {"frames": FRAMES, "hold": [1, gate]}, TEXT.encode(), upstream)
    seen = upstream.seen[-1]
    await upstream.until(lambda: seen.outcome == "cancelled", PATIENCE)
    upstream.open_gate(gate)
    assert (await spend_record(http, gateway, request_id, ADMIN))["metadata"]["status_code"] == 499
    async with http.get(f"{gateway.url}/metrics") as r:
        metrics = await r.text()
    failed = [line for line in metrics.splitlines() if line.startswith("litellm_proxy_failed_requests_metric")]
    assert not [line for line in failed if 'exception_status="499"' in line or "cancelled" in line]


async def test_clients_that_close_right_after_done_under_load_leave_no_trace(gateway: Gateway,
                                                                            upstream: FakeUpstream) -> None:
    """What wrk and many SDKs do: read to [DONE] and drop the connection, many at once."""
    async def one() -> None:
        body = orjson.dumps({"model": "priced", "messages": MESSAGES, "stream": True, "fake": {"chunks": 4}})
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s" % (MASTER.encode(), len(body), body))
        received = b""
        while b"data: [DONE]" not in received:
            piece = await asyncio.wait_for(reader.read(65536), PATIENCE)
            assert piece
            received += piece
        writer.transport.abort()  # a reset, not a polite close

    for _ in range(5):
        await asyncio.gather(*(one() for _ in range(40)))
    log_text = gateway.log()
    assert "Traceback" not in log_text and "unhandled" not in log_text
    assert "status=500" not in log_text
