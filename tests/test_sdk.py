"""The official `openai` SDK as the client: what users point at the gateway must work unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment

HELLO = [{"role": "user", "content": "hello"}]
CLIENT_KEY = "sk-client-key-must-stay-here"
PREFIX = "/olla/litellm"
FIXED = "the mock provider answers this"


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "model_list": [
            deployment("chat", upstream.base_url),
            deployment("instruct", upstream.base_url, model_info={"mode": "completion"}),
            deployment("embed", upstream.base_url, model_info={"mode": "embedding"}),
            deployment("team", upstream.base_url, extra_headers={"X-Team": "blue"}),
            {"model_name": "fixed", "litellm_params": {"model": "mock/fixed", "mock_response": FIXED}},
            {"model_name": "echo", "litellm_params": {"model": "mock/echo"}},
            {"model_name": "mock-embed", "litellm_params": {"model": "mock/mock-embed"},
             "model_info": {"mode": "embedding"}},
        ],
        "router_settings": {"model_group_alias": {"gpt-4": "chat", "secret": {"model": "chat", "hidden": True}}},
        "gateway_settings": {"path_prefixes": [PREFIX]},
    }
    gw = Gateway(config)
    try:  # `with Gateway(...)` would leave the process and its log open if the start failed
        yield gw.start()
    finally:
        gw.stop()


@pytest.fixture
def client(gateway: Gateway) -> Iterator[OpenAI]:
    # No retries: a failure must surface as the gateway answered it, once.
    with OpenAI(base_url=f"{gateway.url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20) as sdk:
        yield sdk


def test_chat_through_the_upstream(client: OpenAI, upstream: FakeUpstream) -> None:
    upstream.reset()
    completion = client.chat.completions.create(model="chat", messages=HELLO)
    assert completion.choices[0].message.content == "alpha says hi"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "chat-upstream"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == \
        (5, 3, 8)
    assert upstream.seen[-1].body["model"] == "chat-upstream"


def test_chat_through_an_alias(client: OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(model="gpt-4", messages=HELLO)
    assert completion.choices[0].message.content == "alpha says hi"
    assert upstream.seen[-1].body["model"] == "chat-upstream"


def test_chat_on_the_mock_provider(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="fixed", messages=HELLO)
    assert completion.choices[0].message.content == FIXED
    assert completion.object == "chat.completion"
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    echoed = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "say it back"}])
    assert echoed.choices[0].message.content == "say it back"


def test_streaming_chat_through_the_upstream(client: OpenAI) -> None:
    stream = client.chat.completions.create(model="chat", messages=HELLO, stream=True,
                                            extra_body={"fake": {"chunks": 3}})
    with stream:
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha says hi 0alpha says hi 1alpha says hi 2"
    assert all(c.usage is None for c in chunks)


def test_streaming_chat_with_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(model="chat", messages=HELLO, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"fake": {"chunks": 2}})
    with stream:
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "alpha says hi 0alpha says hi 1"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.total_tokens == 7
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_chat_on_the_mock_provider(client: OpenAI) -> None:
    stream = client.chat.completions.create(model="fixed", messages=HELLO, stream=True,
                                            stream_options={"include_usage": True})
    with stream:
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FIXED
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0


def test_completions(client: OpenAI, upstream: FakeUpstream) -> None:
    completion = client.completions.create(model="instruct", prompt="once upon", max_tokens=3)
    assert completion.choices[0].text == "alpha completes"
    assert completion.usage is not None and completion.usage.total_tokens == 4
    assert upstream.seen[-1].path == "/v1/completions"
    assert upstream.seen[-1].body["prompt"] == "once upon"
    mocked = client.completions.create(model="echo", prompt="repeat me")
    assert mocked.choices[0].text == "repeat me"


@pytest.mark.parametrize("model", ["embed", "mock-embed"])
def test_embeddings_one_vector_per_input(client: OpenAI, model: str) -> None:
    result = client.embeddings.create(model=model, input=["first", "second", "third"])
    assert [d.index for d in result.data] == [0, 1, 2]
    for item in result.data:
        assert isinstance(item.embedding, list) and item.embedding
        assert all(isinstance(v, float) for v in item.embedding)
    single = client.embeddings.create(model=model, input="only one")
    assert len(single.data) == 1


def test_models_list_and_retrieve(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["chat", "instruct", "embed", "team", "fixed", "echo", "mock-embed", "gpt-4"]
    assert client.models.retrieve("chat").id == "chat"
    assert client.models.retrieve("gpt-4").id == "gpt-4"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.status_code == 404
    assert "no-such-model" in caught.value.message


def test_unknown_model_is_not_found_in_the_openai_envelope(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    error = caught.value
    assert error.status_code == 404
    envelope = error.response.json()
    assert set(envelope) == {"error"}
    assert set(envelope["error"]) == {"message", "type", "param", "code"}
    assert error.body == envelope["error"]
    assert "no-such-model" in envelope["error"]["message"]
    assert error.code == "model_not_found"
    assert error.type == "invalid_request_error"
    assert error.param == "model"


@pytest.mark.parametrize("body, message, code", [
    ({"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}},
     "slow down", "rate_limit_exceeded"),
    ({"detail": "too many requests"}, "too many requests", "429"),
])
def test_upstream_429_is_a_rate_limit_error(client: OpenAI, body: dict[str, object], message: str,
                                            code: str) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="chat", messages=HELLO,
                                       extra_body={"fake": {"status": 429, "body": body}})
    error = caught.value
    assert error.status_code == 429
    assert isinstance(error.body, dict) and error.body["message"] == message
    assert error.code == code
    assert error.type == "rate_limit_error"
    assert error.response.headers["x-litellm-model-group"] == "chat"


async def test_async_chat(gateway: Gateway) -> None:
    async with AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20) as sdk:
        completion = await sdk.chat.completions.create(model="chat", messages=HELLO)
        mocked = await sdk.chat.completions.create(model="fixed", messages=HELLO)
    assert completion.choices[0].message.content == "alpha says hi"
    assert mocked.choices[0].message.content == FIXED


async def test_async_streaming_chat(gateway: Gateway) -> None:
    async with AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20) as sdk:
        stream = await sdk.chat.completions.create(model="chat", messages=HELLO, stream=True,
                                                   stream_options={"include_usage": True},
                                                   extra_body={"fake": {"chunks": 4}})
        async with stream:
            chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"alpha says hi {i}" for i in range(4))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_base_url_under_a_path_prefix(gateway: Gateway, upstream: FakeUpstream) -> None:
    with OpenAI(base_url=f"{gateway.url}{PREFIX}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20) as sdk:
        assert sdk.chat.completions.create(model="chat", messages=HELLO).choices[0].message.content == \
            "alpha says hi"
        assert sdk.chat.completions.create(model="fixed", messages=HELLO).choices[0].message.content == FIXED
        stream = sdk.chat.completions.create(model="fixed", messages=HELLO, stream=True)
        with stream:
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == FIXED
        assert "chat" in [m.id for m in sdk.models.list()]
        assert len(sdk.embeddings.create(model="mock-embed", input=["a", "b"]).data) == 2
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model="no-such-model", messages=HELLO)


def test_extra_body_reaches_the_upstream_and_the_client_key_does_not(client: OpenAI, upstream: FakeUpstream) -> None:
    extra = {"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}, "guided_json": {"type": "object"},
             "fake": {}}
    client.chat.completions.create(model="chat", messages=HELLO, temperature=0.3, extra_body=extra,
                                   extra_headers={"X-Request-ID": "sdk-req-1", "X-Client-Note": "n"})
    seen = upstream.seen[-1]
    assert seen.body == {"model": "chat-upstream", "messages": HELLO, "temperature": 0.3, **extra}
    assert seen.headers["Authorization"] == "Bearer sk-upstream-secret"
    assert [name for name, value in seen.headers.items() if CLIENT_KEY in value] == []


def test_configured_extra_headers_reach_the_upstream(client: OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="team", messages=HELLO)
    seen = upstream.seen[-1]
    assert seen.body["model"] == "team-upstream"
    assert seen.headers["X-Team"] == "blue"
    assert seen.headers["Authorization"] == "Bearer sk-upstream-secret"


def test_raw_response_shows_the_tracking_headers(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4", messages=HELLO,
                                                           extra_headers={"X-Request-ID": "sdk-raw-1"})
    assert raw.status_code == 200
    assert raw.headers["x-litellm-model-group"] == "chat"
    assert len(raw.headers["x-litellm-model-id"]) == 64
    assert raw.headers["x-request-id"] == "sdk-raw-1"
    assert raw.parse().choices[0].message.content == "alpha says hi"
    fresh = client.chat.completions.with_raw_response.create(model="fixed", messages=HELLO)
    assert fresh.headers["x-litellm-model-group"] == "fixed"
    assert fresh.headers["x-litellm-model-id"]
    assert fresh.headers["x-request-id"]
    assert fresh.headers["x-request-id"] != "sdk-raw-1"


@pytest.mark.parametrize("prefix", ["", PREFIX])
def test_the_azure_openai_client_reaches_the_deployment_named_in_its_path(gateway: Gateway, upstream: FakeUpstream,
                                                                          prefix: str) -> None:
    """AzureOpenAI calls /openai/deployments/{deployment}/...?api-version=, with its key in `api-key`."""
    with openai.AzureOpenAI(azure_endpoint=f"{gateway.url}{prefix}", api_key=CLIENT_KEY, api_version="2024-10-21",
                            max_retries=0, timeout=20) as azure:
        answer = azure.chat.completions.create(model="chat", messages=HELLO)
        assert answer.choices[0].message.content and upstream.seen[-1].body["model"] == "chat-upstream"
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in azure.chat.completions.create(
            model="fixed", messages=HELLO, stream=True) if chunk.choices)
        assert streamed == FIXED
        vectors = azure.embeddings.create(model="embed", input=["a", "b"])
        assert len(vectors.data) == 2
        completion = azure.completions.create(model="instruct", prompt="hi")
        assert completion.choices[0].text
        with pytest.raises(openai.NotFoundError):
            azure.chat.completions.create(model="no-such-deployment", messages=HELLO)
