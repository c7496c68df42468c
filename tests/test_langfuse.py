"""Langfuse logging against a fake ingestion API: what arrives, what is kept out, and that a hung Langfuse
costs the requests nothing."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families

from gateway.answer import answer_of
from tests.anthropic_fake import KEY as ANTHROPIC_KEY
from tests.anthropic_fake import FakeAnthropic
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, run_cli

MASTER = "sk-langfuse-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PUBLIC, SECRET = "pk-lf-test", "sk-lf-test-secret"
MESSAGES = [{"role": "user", "content": "tell me a secret recipe"}]
IN_PRICE, OUT_PRICE = 0.001, 0.002
PATIENCE = 15.0


class FakeLangfuse:
    """POST /api/public/ingestion as Langfuse answers it (207, each event's outcome), recording every batch.
    `hang()` makes it hold every request until `release()`."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.arrived = 0
        self.refused = 0
        self.answers: list[int] = []  # statuses to answer the next posts with, before taking any
        self.open = asyncio.Event()
        self.open.set()
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeLangfuse:
        app = web.Application()
        app.router.add_post("/api/public/ingestion", self.ingest)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.open.set()
        if self.runner is not None:
            await self.runner.cleanup()

    def hang(self) -> None:
        self.open.clear()

    def release(self) -> None:
        self.open.set()

    async def ingest(self, request: web.Request) -> web.Response:
        self.arrived += 1
        if self.answers:
            return web.json_response({"message": "not now"}, status=self.answers.pop(0))
        expected = "Basic " + base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            self.refused += 1
            return web.json_response({"message": "Invalid credentials"}, status=401)
        await self.open.wait()
        body = await request.json()
        self.batches.append(body)
        return web.json_response({"successes": [{"id": e["id"], "status": 201} for e in body["batch"]],
                                  "errors": []}, status=207)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches for event in batch["batch"]]

    def find(self, kind: str, trace_id: str) -> list[dict[str, Any]]:
        field = "id" if kind == "trace-create" else "traceId"
        return [e["body"] for e in self.events if e["type"] == kind and e["body"].get(field) == trace_id]

    async def logged(self, trace_id: str, kinds: tuple[str, ...] = ("trace-create", "generation-create"),
                     ) -> tuple[dict[str, Any], ...]:
        """The one event of each kind for this trace, once they have all arrived."""
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while not all(self.find(kind, trace_id) for kind in kinds):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no {kinds} for {trace_id!r} in {len(self.events)} events")
            await asyncio.sleep(0.02)
        found = []
        for kind in kinds:
            events = self.find(kind, trace_id)
            assert len(events) == 1, events
            found.append(events[0])
        return tuple(found)


def environment(fake: FakeLangfuse, **extra: str) -> dict[str, str]:
    return {"LANGFUSE_PUBLIC_KEY": PUBLIC, "LANGFUSE_SECRET_KEY": SECRET, "LANGFUSE_HOST": fake.host,
            "LANGFUSE_FLUSH_INTERVAL": "0.05", "LANGFUSE_FLUSH_AT": "", "LANGFUSE_RELEASE": "", **extra}


def config(upstream: FakeUpstream, **litellm: Any) -> dict[str, Any]:
    priced: dict[str, Any] = {"input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE}
    return {
        "model_list": [
            deployment("chat", upstream.base_url, **priced),
            deployment("instruct", upstream.base_url, model_info={"mode": "completion"}),
            deployment("embed", upstream.base_url, model_info={"mode": "embedding"}),
        ],
        "general_settings": {"master_key": MASTER},
        "teams": [{"team_id": "research", "team_alias": "Research"}],
        "litellm_settings": litellm or {"success_callback": ["langfuse"], "failure_callback": ["langfuse"]},
    }


@asynccontextmanager
async def running(config: dict[str, Any], env: dict[str, str]) -> AsyncIterator[Gateway]:
    """Started and stopped off the loop: the fake Langfuse shares this loop and must keep answering."""
    gw = Gateway(config, env=env)
    await asyncio.to_thread(gw.start)
    try:
        yield gw
    finally:
        await asyncio.to_thread(gw.stop)


@pytest.fixture(scope="module")
async def langfuse() -> AsyncIterator[FakeLangfuse]:
    fake = await FakeLangfuse().start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
async def gateway(upstream: FakeUpstream, langfuse: FakeLangfuse) -> AsyncIterator[Gateway]:
    async with running(config(upstream), environment(langfuse)) as gw:
        yield gw


async def post(http: aiohttp.ClientSession, gw: Gateway, path: str, request_id: str, key: str = MASTER,
               headers: dict[str, str] | None = None, **body: Any) -> tuple[int, bytes]:
    async with http.post(f"{gw.url}/v1/{path}", json=body, headers={
            "Authorization": f"Bearer {key}", "X-Request-ID": request_id, **(headers or {})}) as response:
        return response.status, await response.read()


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    async with http.post(f"{gw.url}/key/generate", json=fields, headers=ADMIN) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["key"])


def moment(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_chat_answer_is_one_trace_with_one_generation(
        gateway: Gateway, langfuse: FakeLangfuse, upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, key_alias="lf-bot", user_id="ada", team_id="research", tags=["prod"])
    status, raw = await post(http, gateway, "chat/completions", "lf-chat-1", key, model="chat",
                             messages=MESSAGES, temperature=0.2, max_tokens=50, user="end-user-7")
    assert status == 200, raw
    trace, generation = await langfuse.logged("lf-chat-1")

    assert trace["name"] == "litellm-acompletion"
    assert trace["userId"] == "end-user-7"
    assert trace["input"] == {"messages": MESSAGES}
    assert trace["output"] == {"role": "assistant", "content": "alpha says hi"}
    assert trace["tags"] == ["prod"]

    assert generation["id"] == "generation-lf-chat-1"
    assert generation["name"] == "litellm:lf-bot"
    assert generation["model"] == "chat-upstream"
    assert generation["modelParameters"] == {"temperature": 0.2, "max_tokens": 50}
    assert generation["input"] == {"messages": MESSAGES}
    assert generation["output"] == {"role": "assistant", "content": "alpha says hi"}
    assert generation["level"] == "DEFAULT" and "statusMessage" not in generation
    cost = 5 * IN_PRICE + 3 * OUT_PRICE
    assert generation["usageDetails"] == {"input": 5, "output": 3, "total": 8}
    assert generation["usage"] == {"input": 5, "output": 3, "total": 8, "unit": "TOKENS",
                                   "totalCost": pytest.approx(cost)}
    assert generation["costDetails"] == {"total": pytest.approx(cost)}
    start, end = moment(generation["startTime"]), moment(generation["endTime"])
    assert start <= end and moment(trace["timestamp"]) == start
    assert "completionStartTime" not in generation  # not a stream

    metadata = generation["metadata"]
    assert metadata["user_api_key_alias"] == "lf-bot"
    assert metadata["user_api_key_user_id"] == "ada"
    assert metadata["user_api_key_team_id"] == "research"
    assert metadata["user_api_key_team_alias"] == "Research"
    assert metadata["user_api_key_end_user_id"] == "end-user-7"
    assert metadata["litellm_call_id"] == "lf-chat-1"
    assert (metadata["requested_model"], metadata["model_group"]) == ("chat", "chat")
    assert metadata["api_base"] == upstream.base_url
    assert (metadata["status"], metadata["status_code"], metadata["stream"]) == ("success", 200, False)
    assert metadata["litellm_response_cost"] == pytest.approx(cost)
    assert metadata["latency_ms"] == pytest.approx((end - start).total_seconds() * 1000, abs=1)
    assert metadata["requester_ip_address"] == "127.0.0.1"

    batch = next(b for b in langfuse.batches if any(e["body"].get("id") == "lf-chat-1" for e in b["batch"]))
    assert batch["metadata"]["public_key"] == PUBLIC
    assert all(set(e) == {"id", "type", "timestamp", "body"} for e in batch["batch"])
    # The caller's key never reaches Langfuse, and the Langfuse secret never reaches the log.
    assert key not in orjson.dumps(langfuse.batches).decode()
    assert SECRET not in gateway.log()
    assert langfuse.refused == 0


async def test_a_stream_through_the_openai_sdk_has_its_text_and_time_to_first_token(
        gateway: Gateway, langfuse: FakeLangfuse) -> None:
    async with AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0, timeout=20) as client:
        stream = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": MESSAGES[0]["content"]}], stream=True,
            extra_headers={"X-Request-ID": "lf-stream-1"},
            extra_body={"fake": {"chunks": 3, "delay": 0.02}})
        received = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    trace, generation = await langfuse.logged("lf-stream-1")
    assert received == "alpha says hi 0alpha says hi 1alpha says hi 2"
    assert generation["output"] == trace["output"] == {"role": "assistant", "content": received}
    # The client asked for no usage; the gateway did, and the generation has it.
    assert generation["usageDetails"] == {"input": 5, "output": 3, "total": 8}
    assert generation["costDetails"]["total"] == pytest.approx(5 * IN_PRICE + 3 * OUT_PRICE)
    start, first, end = (moment(generation[f]) for f in ("startTime", "completionStartTime", "endTime"))
    assert start <= first <= end
    metadata = generation["metadata"]
    assert metadata["stream"] is True
    assert metadata["time_to_first_token_ms"] == pytest.approx((first - start).total_seconds() * 1000, abs=1)
    assert metadata["user_api_key_alias"] == "master" and generation["name"] == "litellm-acompletion"
    assert generation["modelParameters"]["stream"] is True


async def test_request_metadata_names_the_trace_session_and_generation(
        gateway: Gateway, langfuse: FakeLangfuse, http: aiohttp.ClientSession) -> None:
    metadata = {"trace_id": "trace-abc", "session_id": "session-1", "trace_name": "checkout",
                "generation_name": "summarise", "trace_user_id": "shopper-9", "tags": ["beta"],
                "generation_id": "gen-42", "version": "v3", "order": 1234}
    status, _ = await post(http, gateway, "chat/completions", "lf-meta-1", model="chat", messages=MESSAGES,
                           metadata=metadata)
    assert status == 200
    trace, generation = await langfuse.logged("trace-abc")
    assert (trace["name"], trace["sessionId"], trace["userId"], trace["tags"]) == \
        ("checkout", "session-1", "shopper-9", ["beta"])
    assert (generation["id"], generation["name"], generation["version"]) == ("gen-42", "summarise", "v3")
    # What is not Langfuse's to read stays with the generation, as the client sent it.
    assert generation["metadata"]["requester_metadata"] == {"order": 1234}
    assert generation["metadata"]["litellm_call_id"] == "lf-meta-1"

    # A second call joins that trace (the header form of the metadata, as LiteLLM reads it): a generation only.
    status, _ = await post(http, gateway, "chat/completions", "lf-meta-2", model="chat", messages=MESSAGES,
                           headers={"langfuse_existing_trace_id": "trace-abc"})
    assert status == 200
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while len(langfuse.find("generation-create", "trace-abc")) < 2:
        assert asyncio.get_running_loop().time() < deadline, "the second generation never arrived"
        await asyncio.sleep(0.02)
    second = langfuse.find("generation-create", "trace-abc")[1]
    assert second["id"] == "generation-lf-meta-2"
    assert len(langfuse.find("trace-create", "trace-abc")) == 1


async def test_a_failed_call_is_an_error_and_a_refused_one_is_not_a_call(
        gateway: Gateway, langfuse: FakeLangfuse, http: aiohttp.ClientSession) -> None:
    status, _ = await post(http, gateway, "chat/completions", "lf-unauthorised", "sk-no-such-key", model="chat",
                           messages=MESSAGES)
    assert status == 401
    status, _ = await post(http, gateway, "chat/completions", "lf-unknown-model", model="nope", messages=MESSAGES)
    assert status == 404
    status, _ = await post(http, gateway, "chat/completions", "lf-fail-1", model="chat", messages=MESSAGES,
                           fake={"status": 500, "body": {"error": {"message": "upstream exploded"}}})
    assert status == 500
    trace, generation = await langfuse.logged("lf-fail-1")
    assert generation["level"] == "ERROR"
    assert "upstream exploded" in generation["statusMessage"]
    assert "output" not in generation and "usage" not in generation
    assert generation["input"] == trace["input"] == {"messages": MESSAGES}
    assert (generation["metadata"]["status"], generation["metadata"]["status_code"]) == ("failure", 500)
    # Queued in order: the failure arrived, so the two requests before it would have too.
    assert not langfuse.find("trace-create", "lf-unauthorised")
    assert not langfuse.find("trace-create", "lf-unknown-model")


async def test_embeddings_and_completions(gateway: Gateway, langfuse: FakeLangfuse,
                                          http: aiohttp.ClientSession) -> None:
    status, _ = await post(http, gateway, "embeddings", "lf-embed-1", model="embed", input=["one", "two"])
    assert status == 200
    trace, generation = await langfuse.logged("lf-embed-1")
    assert trace["name"] == "litellm-aembedding"
    assert generation["input"] == {"input": ["one", "two"]}
    assert generation["output"] == {"embeddings": 2, "dimensions": 3}
    assert generation["usageDetails"] == {"input": 2, "output": 0, "total": 2}

    status, _ = await post(http, gateway, "completions", "lf-text-1", model="instruct", prompt="once upon")
    assert status == 200
    trace, generation = await langfuse.logged("lf-text-1")
    assert trace["name"] == "litellm-atext_completion"
    assert (generation["input"], generation["output"]) == ({"prompt": "once upon"}, "alpha completes")


async def test_turn_off_message_logging_keeps_prompts_and_answers_out_and_success_only_skips_failures(
        upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    fake = await FakeLangfuse().start()
    try:
        settings = {"success_callback": ["langfuse"], "turn_off_message_logging": True}
        async with running(config(upstream, **settings), environment(fake)) as gw:
            status, _ = await post(http, gw, "chat/completions", "quiet-fail", model="chat", messages=MESSAGES,
                                   fake={"status": 500, "body": "boom"})
            assert status == 500
            for request_id, stream in (("quiet-1", False), ("quiet-2", True)):
                status, raw = await post(http, gw, "chat/completions", request_id, model="chat",
                                         messages=MESSAGES, stream=stream)
                assert status == 200 and b"alpha says hi" in raw
            for request_id in ("quiet-1", "quiet-2"):
                trace, generation = await fake.logged(request_id)
                assert trace["input"] == trace["output"] == "redacted-by-litellm"
                assert generation["input"] == generation["output"] == "redacted-by-litellm"
                assert generation["usageDetails"]["input"] == 5
            sent = orjson.dumps(fake.batches).decode()
            assert "secret recipe" not in sent and "alpha says hi" not in sent
            assert not fake.find("trace-create", "quiet-fail")  # success_callback only
    finally:
        await fake.stop()


def samples(text: str, name: str) -> dict[str, float]:
    return {s.labels.get("reason", ""): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


async def test_a_hung_langfuse_costs_requests_nothing_and_drops_are_counted(
        upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    fake = await FakeLangfuse().start()
    fake.hang()
    plugins = [{"name": "langfuse", "settings": {"queue_size": 5, "flush_at": 2, "timeout": 120,
                                                 "close_timeout": 1}},
               "auth", "spend", "end_user", "model_access", "model_alias", "rate_limit", "budget"]
    base = config(upstream, callbacks=["prometheus"])
    base["gateway_settings"] = {"plugins": plugins}
    try:
        async with running(base, environment(fake)) as gw:
            assert (await post(http, gw, "chat/completions", "hung-0", model="chat", messages=MESSAGES))[0] == 200
            deadline = asyncio.get_running_loop().time() + PATIENCE
            while fake.arrived < 1:  # the sender has posted its first batch, and Langfuse holds it
                assert asyncio.get_running_loop().time() < deadline, "the sender never posted"
                await asyncio.sleep(0.02)

            statuses = []
            for i in range(1, 31):
                status, _ = await post(http, gw, "chat/completions", f"hung-{i}", model="chat", messages=MESSAGES,
                                       stream=i % 2 == 0)
                statuses.append(status)
            assert statuses == [200] * 30
            # Every request was answered while Langfuse still held the first batch.
            assert not fake.open.is_set() and fake.batches == [] and fake.arrived == 1

            async with http.get(f"{gw.url}/metrics") as response:
                text = await response.text()
            # Five requests wait in the queue; the other 25 (a trace and a generation each) were dropped.
            assert samples(text, "litellm_langfuse_dropped_events_total") == {"queue_full": 50.0}
            assert "langfuse: dropped events (queue_full: 2)" in gw.log()

            fake.release()
            for i in range(0, 6):
                await fake.logged(f"hung-{i}")
            assert len(fake.events) == 12
            async with http.get(f"{gw.url}/metrics") as response:
                text = await response.text()
            assert samples(text, "litellm_langfuse_sent_events_total") == {"": 12.0}
    finally:
        await fake.stop()


async def test_a_failed_post_is_retried_and_refused_keys_are_reported(
        upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    fake = await FakeLangfuse().start()
    try:
        async with running(config(upstream, callbacks=["langfuse", "prometheus"]), environment(fake)) as gw:
            fake.answers = [503]
            assert (await post(http, gw, "chat/completions", "retried", model="chat", messages=MESSAGES))[0] == 200
            await fake.logged("retried")
            assert fake.arrived == 2

            fake.answers = [401]
            assert (await post(http, gw, "chat/completions", "refused", model="chat", messages=MESSAGES))[0] == 200
            deadline = asyncio.get_running_loop().time() + PATIENCE
            while "langfuse: dropped events" not in gw.log():
                assert asyncio.get_running_loop().time() < deadline, gw.log()
                await asyncio.sleep(0.02)
            assert "(send_failed: 2); last problem: POST " in gw.log() and "HTTP 401" in gw.log()
            assert fake.arrived == 3  # a 401 is not retried
            async with http.get(f"{gw.url}/metrics") as response:
                text = await response.text()
            assert samples(text, "litellm_langfuse_dropped_events_total") == {"send_failed": 2.0}
            assert samples(text, "litellm_langfuse_send_failures_total") == {"": 2.0}
            assert samples(text, "litellm_langfuse_sent_batches_total") == {"": 1.0}
    finally:
        await fake.stop()


async def test_sigterm_sends_what_is_still_queued(upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    fake = await FakeLangfuse().start()
    try:
        env = environment(fake, LANGFUSE_FLUSH_INTERVAL="600", LANGFUSE_FLUSH_AT="1000")
        gw = Gateway(config(upstream, callbacks=["langfuse"]), env=env)
        await asyncio.to_thread(gw.start)
        try:
            for i in range(3):
                status, _ = await post(http, gw, "chat/completions", f"late-{i}", model="chat", messages=MESSAGES)
                assert status == 200
            assert fake.batches == []  # a batch waits for ten minutes or a thousand requests
        finally:
            code = await asyncio.to_thread(gw.stop)
        assert code == 0
        for i in range(3):
            await fake.logged(f"late-{i}")
        assert len(fake.batches) == 1
    finally:
        await fake.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_langfuse_without_keys_stops_the_start(upstream: FakeUpstream, workers: str) -> None:
    env = {"LANGFUSE_PUBLIC_KEY": "", "LANGFUSE_SECRET_KEY": "", "LANGFUSE_HOST": "http://127.0.0.1:9"}
    result = run_cli(config(upstream, failure_callback=["langfuse"]), "--workers", workers, env=env, timeout=20)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert "plugin 'langfuse'" in result.stderr
    assert "LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY must be set" in result.stderr


async def test_anthropic_messages_are_traced_as_litellm_traces_them(upstream: FakeUpstream, langfuse: FakeLangfuse,
                                                                    http: aiohttp.ClientSession) -> None:
    """/v1/messages to an anthropic/ deployment: LiteLLM's call type, the system prompt with the messages as the
    input, the assistant's content blocks as the output, streamed or not, and the usage Anthropic reported."""
    claude = FakeAnthropic("traced").start()
    try:
        settings = config(upstream)
        settings["model_list"].append({"model_name": "claude", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-5", "api_base": claude.api_base, "api_key": ANTHROPIC_KEY}})
        async with running(settings, environment(langfuse)) as gw:
            for stream in (False, True):
                request_id = f"messages-{stream}"
                status, _ = await post(http, gw, "messages", request_id, model="claude", max_tokens=64,
                                       system="be brief", messages=MESSAGES, stream=stream)
                assert status == 200
                trace, generation = await langfuse.logged(request_id)
                assert trace["name"] == "litellm-anthropic_messages"
                assert generation["input"] == {"system": "be brief", "messages": MESSAGES}
                assert generation["output"] == {"role": "assistant",
                                                "content": [{"type": "text", "text": "traced says hi"}]}
                assert generation["model"] == "claude-sonnet-4-5"
                assert generation["modelParameters"] == {"max_tokens": 64, "stream": stream}
                sent = claude.seen[-1].sent
                output = int(re.findall(rb'"output_tokens":(\d+)', sent)[-1])
                prompt = int(re.findall(rb'"input_tokens":(\d+)', sent)[0])
                assert generation["usageDetails"] == {"input": prompt, "output": output, "total": prompt + output}
    finally:
        claude.stop()


def test_a_streamed_answer_is_read_back_with_its_tool_calls() -> None:
    def event(delta: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": delta}]}) + b"\n\n"

    stream = b"".join([
        event({"role": "assistant", "content": None}),
        event({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        event({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        event({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        b"data: [DONE]\n\n",
    ])
    assert answer_of("chat/completions", True, stream) == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}
    text = b'data: {"choices":[{"index":0,"text":"once"}]}\n\ndata: {"choices":[{"index":0,"text":" more"}]}\n\n'
    assert answer_of("completions", True, text) == "once more"
    # A stream cut at the size limit ends mid-event: what was whole is kept.
    assert answer_of("chat/completions", True, event({"content": "kept"}) + b'data: {"choices":[{"ind') == \
        {"role": "assistant", "content": "kept"}
