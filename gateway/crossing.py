"""A request whose API is not its deployment's: what one attempt sends, and how its answer comes back.

The proxy asks for a `Crossing` in `_forward` when the caller's API (gateway/protocols.py) and the
deployment's differ, and once per attempt, since the upstream's dialect is the deployment's. Everything
else about the attempt is the proxy's, as for any request: the pool, timeouts, retries, fallbacks,
cooldowns, the deployment's limits and the one settlement. A Crossing only says what to send where, and
turns the answer (a JSON body, a stream read by read, an error) into the caller's API with
gateway/translate/. The answer's usage is what the translator read from it: it reads every event anyway.

Two crossings are translated: Anthropic's Messages API to an OpenAI-compatible deployment (`ToChat`), and
OpenAI's chat completions to an `anthropic/` deployment (`ToMessages`). OpenAI's Responses API goes to a
deployment that does not serve it as chat completions (`ResponsesToChat`), and to an `anthropic/` one
through both (`ResponsesToMessages`: Responses to chat, chat to Messages, and the answer back the same
way). A `bedrock/` deployment speaks neither, and both chat completions and the Messages API come to it:
`ToConverse` (Bedrock's Converse API, for chat completions and for the Messages API to a model other than
Claude) and `ToInvoke` (InvokeModel with Claude's own Messages body). Their requests are signed here, once
the body is known (gateway/bedrock/auth.py). Any other route to a deployment of another API is refused
before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from multidict import CIMultiDictProxy

from gateway.anthropic.requests import check_headers, upstream_headers
from gateway.bedrock.errors import bedrock_error
from gateway.bedrock.from_converse import ConverseToMessagesStream, converse_to_message
from gateway.bedrock.invoke import InvokeToMessagesStream, invoke_answer, invoke_body
from gateway.bedrock.paths import operation_path, split_route
from gateway.bedrock.to_converse import messages_to_converse
from gateway.errors import ApiError, upstream_error
from gateway.protocols import Api, untranslated
from gateway.router import Deployment
from gateway.stream_usage import StreamMeter, Tail
from gateway.translate import (
    GENERIC,
    ChatToMessagesStream,
    Dialect,
    MessagesToChatStream,
    Translated,
    chat_request_to_messages,
    decode_chat_request,
    decode_messages_request,
    dialect_for,
    messages_request_to_chat,
    openai_error_of,
    translate_chat_response,
    translate_messages_response,
)
from gateway.translate.responses_stream import ChatToResponsesStream
from gateway.translate.responses_to_chat import Shell, responses_request_to_chat, translate_chat_answer
from gateway.translate.responses_wire import ResponsesRequest
from gateway.usage import Usage

_encode = msgspec.json.Encoder().encode


class StreamTranslator(Protocol):
    """ChatToMessagesStream, MessagesToChatStream or a Bedrock stream's: the stream in the caller's API, read
    by read."""

    @property
    def answer_chars(self) -> int: ...

    @property
    def failure(self) -> ApiError | None: ...

    @property
    def usage(self) -> Usage | None: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class Crossing:
    """One attempt's request in the deployment's API: `path` under its api_base, the body, and the header
    lines it needs besides the deployment's own."""

    __slots__ = ("path", "headers", "model", "stream")

    path: str
    headers: bytes
    model: str  # the model the answer names: the deployment's, as a relayed answer names it
    stream: bool

    def payload(self) -> bytes:
        raise NotImplementedError

    def answer(self, raw: bytes) -> Translated:
        """A JSON answer in the caller's API, and its usage (None when the upstream gave none)."""
        raise NotImplementedError

    def translator(self) -> StreamTranslator:
        raise NotImplementedError

    def error(self, status: int, raw: bytes) -> ApiError:
        """The upstream's error answer, as an error the caller's route writes in its own shape."""
        raise NotImplementedError


class ToChat(Crossing):
    """Anthropic's Messages API in, an OpenAI-compatible deployment's chat completions out."""

    __slots__ = ("chat",)

    def __init__(self, body: dict[str, Any], dialect: Dialect) -> None:
        self.chat = messages_request_to_chat(decode_messages_request(body), dialect)
        self.path = "chat/completions"
        self.headers = b""
        self.model = self.chat.model
        self.stream = bool(self.chat.stream)

    def payload(self) -> bytes:
        return _encode(self.chat)

    def chat_body(self) -> dict[str, Any]:
        """The chat request as a parsed JSON body, for the built-in mock, which answers those."""
        found: dict[str, Any] = msgspec.to_builtins(self.chat)
        return found

    def answer(self, raw: bytes) -> Translated:
        return translate_chat_response(raw, self.model)

    def translator(self) -> StreamTranslator:
        # The request asked for stream_options.include_usage: the translator reads the usage chunk itself.
        return ChatToMessagesStream(self.model)

    def error(self, status: int, raw: bytes) -> ApiError:
        # Its message word for word; the route writes it in Anthropic's envelope, typed by the status.
        return upstream_error(status, raw)


class ToMessages(Crossing):
    """OpenAI's chat completions in, an `anthropic/` deployment's Messages API out."""

    __slots__ = ("messages", "include_usage")

    def __init__(self, body: dict[str, Any], headers: CIMultiDictProxy[str], include_usage: bool) -> None:
        self.messages = chat_request_to_messages(decode_chat_request(body))
        self.path = "messages"
        check_headers(headers)
        self.headers = upstream_headers(headers)  # the client's anthropic-version and -beta, if it sent them
        self.model = self.messages.model
        self.stream = bool(self.messages.stream)
        self.include_usage = include_usage

    def payload(self) -> bytes:
        return _encode(self.messages)

    def answer(self, raw: bytes) -> Translated:
        return translate_messages_response(raw, self.model)

    def translator(self) -> StreamTranslator:
        return MessagesToChatStream(self.model, self.include_usage)

    def error(self, status: int, raw: bytes) -> ApiError:
        return openai_error_of(status, raw)


class ResponsesToChat(Crossing):
    """OpenAI's Responses API in, a chat-only deployment's chat completions out."""

    __slots__ = ("chat", "shell")

    def __init__(self, body: dict[str, Any], dialect: Dialect) -> None:
        request = decode_responses_request(body)
        self.chat = responses_request_to_chat(request, dialect)
        self.path = "chat/completions"
        self.headers = b""
        self.model = self.chat.model
        self.stream = bool(self.chat.stream)
        self.shell = Shell(request, self.model)

    def payload(self) -> bytes:
        return _encode(self.chat)

    def chat_body(self) -> dict[str, Any]:
        found: dict[str, Any] = msgspec.to_builtins(self.chat)
        return found

    def answer(self, raw: bytes) -> Translated:
        body, usage = translate_chat_answer(raw, self.shell)
        return Translated(body, usage)

    def translator(self) -> StreamTranslator:
        return ChatToResponsesStream(self.shell)

    def error(self, status: int, raw: bytes) -> ApiError:
        return upstream_error(status, raw)


class ResponsesToMessages(Crossing):
    """OpenAI's Responses API in, an `anthropic/` deployment's Messages API out, by way of chat completions."""

    __slots__ = ("messages", "shell")

    def __init__(self, body: dict[str, Any], headers: CIMultiDictProxy[str]) -> None:
        request = decode_responses_request(body)
        self.messages = chat_request_to_messages(responses_request_to_chat(request, GENERIC))
        self.path = "messages"
        check_headers(headers)
        self.headers = upstream_headers(headers)
        self.model = self.messages.model
        self.stream = bool(self.messages.stream)
        self.shell = Shell(request, self.model)

    def payload(self) -> bytes:
        return _encode(self.messages)

    def answer(self, raw: bytes) -> Translated:
        chat = translate_messages_response(raw, self.model)
        body, usage = translate_chat_answer(chat.body, self.shell)
        # Anthropic's counts as the Messages translation read them (its cache writes among them).
        return Translated(body, chat.usage or usage)

    def translator(self) -> StreamTranslator:
        return Chained(MessagesToChatStream(self.model, True), ChatToResponsesStream(self.shell))

    def error(self, status: int, raw: bytes) -> ApiError:
        return openai_error_of(status, raw)


class Chained:
    """Two stream translations, one feeding the other (Anthropic's stream to chat completions', then to the
    Responses API's; Bedrock's to the Messages API's, then to chat completions'): the usage and the length of
    the answer are the first's, which reads the upstream."""

    __slots__ = ("first", "second")

    def __init__(self, first: StreamTranslator, second: StreamTranslator) -> None:
        self.first = first
        self.second = second

    @property
    def usage(self) -> Usage | None:
        return self.first.usage or self.second.usage

    @property
    def answer_chars(self) -> int:
        return self.first.answer_chars

    @property
    def failure(self) -> ApiError | None:
        return self.first.failure or self.second.failure

    def feed(self, chunk: bytes) -> bytes:
        middle = self.first.feed(chunk)
        return self.second.feed(middle) if middle else b""

    def flush(self) -> bytes:
        return self.second.feed(self.first.flush()) + self.second.flush()


def decode_responses_request(body: dict[str, Any]) -> ResponsesRequest:
    try:
        return msgspec.convert(body, ResponsesRequest)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"this request cannot be translated to chat completions: {exc}",
                       "invalid_request_error") from None


class ToBedrock(Crossing):
    """Either API in, a Bedrock deployment out; the request is signed as soon as its body is made."""

    __slots__ = ("inbound", "body", "include_usage")

    def __init__(self, inbound: Api, deployment: Deployment, model_id: str, operation: str, body: bytes,
                 stream: bool, include_usage: bool) -> None:
        self.inbound = inbound
        self.model = model_id
        self.stream = stream
        self.include_usage = include_usage
        self.body = body
        self.path = operation_path(model_id, operation)
        assert deployment.signer is not None
        self.headers = deployment.signer.headers(f"{deployment.base_url}/{self.path}", body)

    def payload(self) -> bytes:
        return self.body

    def error(self, status: int, raw: bytes) -> ApiError:
        return bedrock_error(status, raw)

    def _in_callers_api(self, first: StreamTranslator) -> StreamTranslator:
        if self.inbound is Api.OPENAI:
            return Chained(first, MessagesToChatStream(self.model, self.include_usage))
        return first


class ToConverse(ToBedrock):
    """Chat completions, or the Messages API to a model other than Claude, as Bedrock's Converse."""

    __slots__ = ()

    def __init__(self, inbound: Api, deployment: Deployment, model_id: str, body: dict[str, Any],
                 include_usage: bool) -> None:
        if inbound is Api.OPENAI:
            messages = chat_request_to_messages(decode_chat_request(body))
        else:
            messages = decode_messages_request(body)
        stream = bool(messages.stream)
        payload = _encode(messages_to_converse(messages, model_id))
        super().__init__(inbound, deployment, model_id, "converse-stream" if stream else "converse", payload,
                         stream, include_usage)

    def answer(self, raw: bytes) -> Translated:
        message = converse_to_message(raw, self.model)
        if self.inbound is Api.OPENAI:
            return translate_messages_response(message.body, self.model)
        return message

    def translator(self) -> StreamTranslator:
        return self._in_callers_api(ConverseToMessagesStream(self.model))


class ToInvoke(ToBedrock):
    """The Messages API (or chat completions translated to it) to Claude on Bedrock's InvokeModel."""

    __slots__ = ()

    def __init__(self, inbound: Api, deployment: Deployment, model_id: str, body: dict[str, Any],
                 headers: CIMultiDictProxy[str], include_usage: bool) -> None:
        if inbound is Api.OPENAI:
            messages = chat_request_to_messages(decode_chat_request(body))
            sent: dict[str, Any] = msgspec.to_builtins(messages)
            payload = invoke_body(sent, None)
        else:
            messages = decode_messages_request(body)  # a bad body is the caller's 400, before anything is sent
            check_headers(headers)
            payload = invoke_body(body, headers)
        stream = bool(messages.stream)
        super().__init__(inbound, deployment, model_id, "invoke-with-response-stream" if stream else "invoke",
                         payload, stream, include_usage)

    def answer(self, raw: bytes) -> Translated:
        if self.inbound is Api.OPENAI:
            return translate_messages_response(raw, self.model)
        return invoke_answer(raw)

    def translator(self) -> StreamTranslator:
        return self._in_callers_api(InvokeToMessagesStream())


class ResponsesToBedrock(Crossing):
    """OpenAI's Responses API in, a Bedrock deployment out, by way of chat completions (and on from there as
    chat goes to Bedrock: Converse, or Claude's own body on InvokeModel)."""

    __slots__ = ("inner", "shell")

    def __init__(self, body: dict[str, Any], deployment: Deployment, headers: CIMultiDictProxy[str]) -> None:
        request = decode_responses_request(body)
        chat = responses_request_to_chat(request, GENERIC)
        self.inner = bedrock_crossing("chat/completions", Api.OPENAI, deployment, msgspec.to_builtins(chat),
                                      headers, True)
        self.path, self.headers, self.model, self.stream = (self.inner.path, self.inner.headers,
                                                            self.inner.model, self.inner.stream)
        self.shell = Shell(request, chat.model)

    def payload(self) -> bytes:
        return self.inner.payload()

    def answer(self, raw: bytes) -> Translated:
        chat = self.inner.answer(raw)
        body, usage = translate_chat_answer(chat.body, self.shell)
        return Translated(body, chat.usage or usage)

    def translator(self) -> StreamTranslator:
        return Chained(self.inner.translator(), ChatToResponsesStream(self.shell))

    def error(self, status: int, raw: bytes) -> ApiError:
        return self.inner.error(status, raw)


def bedrock_crossing(endpoint: str, inbound: Api, deployment: Deployment, body: dict[str, Any],
                     headers: CIMultiDictProxy[str], include_usage: bool) -> Crossing:
    """LiteLLM's routes within Bedrock: `bedrock/converse/<id>` and `bedrock/invoke/<id>` choose the API;
    a bare `bedrock/<id>` takes Converse, but InvokeModel for the Messages API to a Claude model."""
    if (inbound, endpoint) not in ((Api.OPENAI, "chat/completions"), (Api.ANTHROPIC, "messages")):
        raise untranslated(endpoint, inbound, deployment, Api.BEDROCK)
    operation, model_id = split_route(str(body.get("model") or ""))
    claude = "anthropic." in model_id
    if operation == "invoke" or (not operation and claude and inbound is Api.ANTHROPIC):
        if not claude:
            raise ApiError(400, f"model group {deployment.group!r}: bedrock/invoke/ is translated for Anthropic's "
                           f"Claude models only, not {model_id!r}; use bedrock/converse/{model_id}",
                           "invalid_request_error", "model")
        return ToInvoke(inbound, deployment, model_id, body, headers, include_usage)
    return ToConverse(inbound, deployment, model_id, body, include_usage)


def crossing(endpoint: str, inbound: Api, deployment: Deployment, body: dict[str, Any],
             headers: CIMultiDictProxy[str], include_usage: bool) -> Crossing:
    """The crossing for a request to a deployment of another API (`include_usage`: the client's own
    stream_options.include_usage); a 400 for a route that has no counterpart there, or a body that cannot
    be said in the deployment's API."""
    if deployment.protocol is Api.BEDROCK:
        if inbound is Api.RESPONSES:
            return ResponsesToBedrock(body, deployment, headers)
        return bedrock_crossing(endpoint, inbound, deployment, body, headers, include_usage)
    if inbound is Api.ANTHROPIC and endpoint == "messages":
        return ToChat(body, dialect_for(deployment.provider.name))
    if inbound is Api.OPENAI and endpoint == "chat/completions":
        return ToMessages(body, headers, include_usage)
    if inbound is Api.RESPONSES:
        if deployment.protocol is Api.ANTHROPIC:
            return ResponsesToMessages(body, headers)
        return ResponsesToChat(body, dialect_for(deployment.provider.name))
    raise untranslated(endpoint, inbound, deployment, deployment.protocol)


class TranslatedMeter(StreamMeter):
    """A StreamMeter for a translated stream: each upstream read goes through the translator, and what the
    translator read is the stream's usage; the client's bytes are counted and kept as for any stream."""

    __slots__ = ("translator", "estimate")

    def __init__(self, translator: StreamTranslator, keep_output: int,
                 estimate: Callable[[dict[str, Any], int], Usage], keep_tail: bool = False) -> None:
        """`keep_tail`: keep the end of the client's bytes, for an error event that continues their last (the
        Responses API's numbers its events); other routes' error events do not read it."""
        super().__init__(False, False, keep_output)
        if keep_tail:
            self.tail = Tail()
        self.translator = translator
        self.feed = translator.feed
        self.estimate = estimate

    def flush(self) -> bytes:
        return self.translator.flush()

    def broken(self) -> bytes:
        return b""  # the gateway's own error event ends it; the translator's would be a second one

    def failure(self) -> ApiError | None:
        return self.translator.failure

    def reported(self) -> Usage | None:
        return self.translator.usage

    def usage(self, body: dict[str, Any]) -> Usage:
        """The upstream's usage, else the caller's prompt and the answer text translated, at four characters a
        token."""
        return self.translator.usage or self.estimate(body, self.translator.answer_chars)
