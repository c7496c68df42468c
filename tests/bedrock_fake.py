"""A fake AWS Bedrock runtime on loopback, in a thread of its own, built from botocore's model of the service.

Every request's SigV4 signature is recomputed with botocore's own signer from the fake's credentials and
the request as received (method, path, the signed headers, the body's hash), as Bedrock does; an unknown
access key is Bedrock's 403 UnrecognizedClientException, a signature that does not match (a wrong secret,
a body changed after signing) its 403 InvalidSignatureException, each with the exception's name in
`x-amzn-ErrorType` and `{"message": ...}` as the body. A Bedrock API key (`Authorization: Bearer`) is
checked against the fake's.

Routes (the model id percent-encoded in the path, as botocore sends it): `/model/{id}/converse` and
`/converse-stream`, checked as Converse requests (messages from the user's, alternating; each content block
one member; each toolResult answering a toolUse of the turn before; no member Converse does not define), and
`/model/{id}/invoke` and `/invoke-with-response-stream` for Claude (`anthropic_version`
"bedrock-2023-05-31" in the body, no `model`, no `stream`). Streams are AWS event-stream frames with their
CRC32s, built here from the format's definition, each cut across writes at odd places (`cut` bytes a write).

Answers: tools given and no tool result yet, it calls the first tool; a tool result, it says what the tool
said; thinking asked for, a reasoning block first; otherwise `TEXT`. Usage is counted from the request
(`input_tokens`: its characters over four) and recorded with each request, so tests know the exact numbers.
A cachePoint makes what comes before it read from the cache.

Steering, by model id: `fake.throttled` always answers 429 ThrottlingException, `fake.invalid` 400
ValidationException, `fake.too-long` Bedrock's 400 for a prompt over the context window;
`fake.stream-throttled` starts a stream and ends it with a throttlingException frame.
`fail_next` (a list of statuses) makes the next requests fail with those.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.loopback import Loopback

ACCESS_KEY = "AKIAFAKEBEDROCK00001"
SECRET_KEY = "fake/bedrock+secret/key/0123456789abcdefgh"
SESSION_TOKEN = "fake-session-token"
REGION = "us-east-1"
BEARER = "ABSKfakebedrockapikey"
TEXT = "bedrock says hi"
CONVERSE_FIELDS = frozenset({"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                             "additionalModelRequestFields", "promptVariables", "additionalModelResponseFieldPaths",
                             "requestMetadata", "performanceConfig", "serviceTier", "outputConfig"})
CONTENT_MEMBERS = frozenset({"text", "image", "document", "video", "audio", "toolUse", "toolResult", "guardContent",
                             "cachePoint", "reasoningContent", "citationsContent", "searchResult"})
INFERENCE_FIELDS = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
BEDROCK_VERSION = "bedrock-2023-05-31"


@dataclass
class Seen:
    path: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]
    usage: dict[str, int] = field(default_factory=dict)
    status: int = 200


class BedrockError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=orjson.dumps({"message": self.message}),
                            headers={"x-amzn-ErrorType": f"{self.kind}:http://internal.amazon.com/coral/com.amazon"
                                                         ".bedrock/", "Content-Type": "application/json"})


def invalid(message: str) -> BedrockError:
    return BedrockError(400, "ValidationException", message)


# AWS event-stream framing: prelude (total length, headers length, prelude CRC32), headers, payload, CRC32.

def _header(name: str, value: str) -> bytes:
    encoded = value.encode()
    return bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(encoded)) + encoded


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    head = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event(kind: str, body: dict[str, Any]) -> bytes:
    # Bedrock pads each event with a `p` member of letters, so that its length says nothing of the content.
    return frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                 orjson.dumps({**body, "p": "abcdefghij"[: 1 + len(kind) % 9]}))


def exception(kind: str, message: str) -> bytes:
    return frame({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                 orjson.dumps({"message": message}))


def cuts(data: bytes, size: int) -> list[bytes]:
    """`data` in pieces of `size`, `size + 2`, `size + 4`...: frames split at odd places, and unevenly."""
    pieces: list[bytes] = []
    at, step = 0, size
    while at < len(data):
        pieces.append(data[at:at + step])
        at += step
        step = size + (step - size + 2) % 11
    return pieces


def tokens(value: Any) -> int:
    return max(1, len(orjson.dumps(value)) // 4)


@dataclass
class FakeBedrock(Loopback):
    name: str = "bedrock"
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    session_token: str | None = None
    region: str = REGION
    bearer: str | None = None
    cut: int = 7
    seen: list[Seen] = field(default_factory=list, repr=False)
    fail_next: list[int] = field(default_factory=list, repr=False)
    port: int = 0

    def __post_init__(self) -> None:
        self._loopback(f"bedrock-{self.name}")

    def __repr__(self) -> str:
        return f"FakeBedrock({self.name!r}, port={self.port})"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/model/{model}/{operation}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        model = unquote(request.match_info["model"])
        operation = request.match_info["operation"]
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {}
        seen = Seen(request.path, model, dict(request.headers), body)
        self.seen.append(seen)
        try:
            self._authorise(request, raw)
            if self.fail_next:
                status = self.fail_next.pop(0)
                raise BedrockError(status, "ThrottlingException" if status == 429 else "InternalServerException",
                                   "Too many requests, please wait before trying again." if status == 429
                                   else "The server encountered an internal error.")
            if model == "fake.throttled":
                raise BedrockError(429, "ThrottlingException", "Too many requests, please wait before trying again.")
            if model == "fake.too-long":
                raise invalid("Input is too long for requested model.")
            if model == "fake.invalid":
                raise invalid("The model returned the following errors: Malformed input request, please reformat "
                              "your input and try again.")
            if operation in ("converse", "converse-stream"):
                answer = self._converse_answer(model, body)
            elif operation in ("invoke", "invoke-with-response-stream"):
                answer = self._invoke_answer(model, body)
            else:
                raise BedrockError(404, "UnknownOperationException", f"no operation {operation}")
        except BedrockError as error:
            seen.status = error.status
            return error.response()
        seen.usage = answer["usage"]
        if operation == "converse":
            return web.json_response(self._converse_json(answer))
        if operation == "invoke":
            return web.Response(body=orjson.dumps(self._message(model, answer)), content_type="application/json")
        frames = (self._converse_frames(model, answer) if operation == "converse-stream"
                  else self._invoke_frames(model, answer))
        response = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                               "x-amzn-RequestId": "fake-request-id"})
        await response.prepare(request)
        for piece in cuts(b"".join(frames), self.cut):
            await response.write(piece)  # chunked: each piece reaches the gateway as a read of its own
        await response.write_eof()
        return response

    # Authorisation, as Bedrock checks it

    def _authorise(self, request: web.Request, raw: bytes) -> None:
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer "):
            if self.bearer is None or not hmac.compare_digest(given[7:], self.bearer):
                raise BedrockError(403, "UnrecognizedClientException", "Invalid API Key format: Must start with "
                                   "pre-defined prefix" if self.bearer is None else "The API key is invalid.")
            return
        fields = dict(part.strip().split("=", 1) for part in given.removeprefix("AWS4-HMAC-SHA256 ").split(","))
        if not given.startswith("AWS4-HMAC-SHA256 ") or {"Credential", "SignedHeaders", "Signature"} - fields.keys():
            raise BedrockError(403, "AccessDeniedException", "Authorization header requires 'Credential', "
                               "'Signature' and 'SignedHeaders' parameters.")
        key, date, region, service, _ = fields["Credential"].split("/")
        if key != self.access_key:
            raise BedrockError(403, "UnrecognizedClientException",
                               "The security token included in the request is invalid.")
        if self.session_token is not None and request.headers.get("X-Amz-Security-Token") != self.session_token:
            raise BedrockError(403, "UnrecognizedClientException",
                               "The security token included in the request is invalid.")
        timestamp = request.headers.get("X-Amz-Date", "")
        if region != self.region or service != "bedrock" or not timestamp.startswith(date):
            raise BedrockError(403, "InvalidSignatureException", f"Credential should be scoped to a valid region "
                               f"and service: {region}/{service}.")
        signed = fields["SignedHeaders"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            raise BedrockError(403, "InvalidSignatureException", "'Host' and 'X-Amz-Date' must be signed.")
        headers = {name: request.headers.get(name, "") for name in signed}
        recomputed = AWSRequest(method=request.method, url=f"http://{request.host}{request.raw_path}", data=raw,
                                headers=headers)
        recomputed.context["timestamp"] = timestamp
        signer = SigV4Auth(Credentials(self.access_key, self.secret_key, self.session_token), "bedrock", self.region)
        canonical = signer.canonical_request(recomputed)
        expected = signer.signature(signer.string_to_sign(recomputed, canonical), recomputed)
        if not hmac.compare_digest(expected, fields["Signature"]):
            raise BedrockError(403, "InvalidSignatureException", "The request signature we calculated does not "
                               "match the signature you provided. Check your AWS Secret Access Key and signing "
                               "method. Consult the service documentation for details.")

    # Converse

    def _converse_answer(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - CONVERSE_FIELDS
        if unknown:
            raise invalid(f"Unknown parameter(s): {', '.join(sorted(unknown))}")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid("A conversation must start with a user message. Try again with a conversation that "
                          "starts with a user message.")
        expected_role = "user"
        called: set[str] = set()
        for index, message in enumerate(messages):
            if message.get("role") != expected_role:
                raise invalid("A conversation must alternate between user and assistant roles. Make sure the "
                              "conversation alternates between user and assistant roles and try again.")
            expected_role = "assistant" if expected_role == "user" else "user"
            answered: set[str] = set()
            for block in message.get("content") or []:
                members = set(block)
                if len(members) != 1 or not members <= CONTENT_MEMBERS:
                    raise invalid(f"messages.{index}.content: a ContentBlock has exactly one member, not "
                                  f"{sorted(members)}")
                if "toolUse" in block:
                    use = block["toolUse"]
                    if not {"toolUseId", "name", "input"} <= set(use):
                        raise invalid("toolUse requires toolUseId, name and input")
                    answered.add(use["toolUseId"])
                if "toolResult" in block and block["toolResult"].get("toolUseId") not in called:
                    raise invalid(f"The toolResult blocks at messages.{index}.content must answer the toolUse "
                                  "blocks of the previous turn.")
                if "cachePoint" in block and block["cachePoint"] != {"type": "default"}:
                    raise invalid("cachePoint: type is required and must be 'default'")
                if "image" in block:
                    base64.b64decode(block["image"]["source"]["bytes"], validate=True)
            called = answered
        config = body.get("inferenceConfig") or {}
        if set(config) - INFERENCE_FIELDS:
            raise invalid(f"inferenceConfig: unknown member(s) {sorted(set(config) - INFERENCE_FIELDS)}")
        system = body.get("system") or []
        last = messages[-1]["content"]
        results = [b["toolResult"] for b in last if "toolResult" in b]
        tools = (body.get("toolConfig") or {}).get("tools") or []
        extra = body.get("additionalModelRequestFields") or {}
        cached_upto = _cached_prefix(system, messages)
        prompt = tokens(system) + tokens(messages) + tokens(tools)
        answer: dict[str, Any] = {"text": TEXT, "stop": "end_turn"}
        if extra.get("thinking", {}).get("type") == "enabled":
            answer["reasoning"] = ("Let me think about this.", "sig-" + str(len(messages)))
        if results:
            said = results[0]["content"][0].get("text", "")
            answer["text"] = f"the tool said: {said}"
        elif tools:
            spec = tools[0]["toolSpec"]
            answer.update(tool=("tooluse_" + str(len(self.seen)), spec["name"], {"location": "Paris"}),
                          stop="tool_use", text="I will call the tool.")
        output = tokens(answer["text"]) + (tokens(answer["tool"][2]) if "tool" in answer else 0)
        read = min(cached_upto, prompt)
        answer["usage"] = {"inputTokens": prompt - read, "outputTokens": output,
                           "totalTokens": prompt + output, "cacheReadInputTokens": read, "cacheWriteInputTokens": 0}
        return answer

    def _converse_json(self, answer: dict[str, Any]) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if "reasoning" in answer:
            text, signature = answer["reasoning"]
            content.append({"reasoningContent": {"reasoningText": {"text": text, "signature": signature}}})
        content.append({"text": answer["text"]})
        if "tool" in answer:
            tool_id, name, arguments = answer["tool"]
            content.append({"toolUse": {"toolUseId": tool_id, "name": name, "input": arguments}})
        return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": answer["stop"],
                "usage": answer["usage"], "metrics": {"latencyMs": 123}}

    def _converse_frames(self, model: str, answer: dict[str, Any]) -> list[bytes]:
        frames = [event("messageStart", {"role": "assistant"})]
        index = 0
        if "reasoning" in answer:
            text, signature = answer["reasoning"]
            for piece in (text[:9], text[9:]):
                frames.append(event("contentBlockDelta", {"contentBlockIndex": index,
                                                          "delta": {"reasoningContent": {"text": piece}}}))
            frames.append(event("contentBlockDelta", {"contentBlockIndex": index,
                                                      "delta": {"reasoningContent": {"signature": signature}}}))
            frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        text = answer["text"]
        for piece in (text[:4], text[4:11], text[11:]):
            frames.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}))
        frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
        if "tool" in answer:
            index += 1
            tool_id, name, arguments = answer["tool"]
            frames.append(event("contentBlockStart", {"contentBlockIndex": index,
                                                      "start": {"toolUse": {"toolUseId": tool_id, "name": name}}}))
            encoded = orjson.dumps(arguments).decode()
            for piece in (encoded[:5], encoded[5:]):
                frames.append(event("contentBlockDelta", {"contentBlockIndex": index,
                                                          "delta": {"toolUse": {"input": piece}}}))
            frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
        if model == "fake.stream-throttled":
            return [*frames[:3], exception("throttlingException", "Too many tokens, please wait before trying "
                                                                   "again.")]
        frames.append(event("messageStop", {"stopReason": answer["stop"]}))
        frames.append(event("metadata", {"usage": answer["usage"], "metrics": {"latencyMs": 321}}))
        return frames

    # InvokeModel with Claude's Messages body

    def _invoke_answer(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("anthropic_version") != BEDROCK_VERSION:
            raise invalid(f"Malformed input request: #: required key [anthropic_version] not found or not "
                          f"{BEDROCK_VERSION}, please reformat your input and try again.")
        for refused in ("model", "stream"):
            if refused in body:
                raise invalid(f"Malformed input request: #: extraneous key [{refused}] is not permitted, please "
                              "reformat your input and try again.")
        if not isinstance(body.get("max_tokens"), int) or not body.get("messages"):
            raise invalid("Malformed input request: #: required key [max_tokens] or [messages] not found")
        prompt = tokens(body.get("system") or "") + tokens(body["messages"]) + tokens(body.get("tools") or [])
        tools = body.get("tools") or []
        last = body["messages"][-1]["content"]
        results = [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"] \
            if isinstance(last, list) else []
        answer: dict[str, Any] = {"text": TEXT, "stop": "end_turn"}
        if results:
            said = results[0]["content"]
            answer["text"] = f"the tool said: {said if isinstance(said, str) else said[0]['text']}"
        elif tools:
            answer.update(tool=("toolu_bdrk_" + str(len(self.seen)), tools[0]["name"], {"location": "Paris"}),
                          stop="tool_use", text="I will call the tool.")
        output = tokens(answer["text"]) + (tokens(answer["tool"][2]) if "tool" in answer else 0)
        answer["usage"] = {"input_tokens": prompt, "output_tokens": output}
        return answer

    def _message(self, model: str, answer: dict[str, Any]) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": answer["text"]}]
        if "tool" in answer:
            tool_id, name, arguments = answer["tool"]
            content.append({"type": "tool_use", "id": tool_id, "name": name, "input": arguments})
        return {"id": "msg_bdrk_01FAKE", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": answer["stop"], "stop_sequence": None, "usage": answer["usage"]}

    def _invoke_frames(self, model: str, answer: dict[str, Any]) -> list[bytes]:
        usage = answer["usage"]
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": {"id": "msg_bdrk_01FAKE", "type": "message", "role": "assistant",
                                                  "model": model, "content": [], "stop_reason": None,
                                                  "stop_sequence": None, "usage": {
                                                      "input_tokens": usage["input_tokens"], "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": answer["text"][:6]}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": answer["text"][6:]}},
            {"type": "content_block_stop", "index": 0}]
        if "tool" in answer:
            tool_id, name, arguments = answer["tool"]
            encoded = orjson.dumps(arguments).decode()
            events += [
                {"type": "content_block_start", "index": 1,
                 "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}},
                {"type": "content_block_delta", "index": 1,
                 "delta": {"type": "input_json_delta", "partial_json": encoded[:4]}},
                {"type": "content_block_delta", "index": 1,
                 "delta": {"type": "input_json_delta", "partial_json": encoded[4:]}},
                {"type": "content_block_stop", "index": 1}]
        events += [
            {"type": "message_delta", "delta": {"stop_reason": answer["stop"], "stop_sequence": None},
             "usage": {"output_tokens": usage["output_tokens"]}},
            {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": usage["input_tokens"], "outputTokenCount": usage["output_tokens"],
                "invocationLatency": 456, "firstByteLatency": 123}}]
        return [event("chunk", {"bytes": base64.b64encode(orjson.dumps(e)).decode()}) for e in events]


def _cached_prefix(system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> int:
    """Tokens up to the last cachePoint: what a second request with the same prefix reads from the cache."""
    upto = 0
    for at, block in enumerate(system):
        if "cachePoint" in block:
            if block["cachePoint"] != {"type": "default"}:
                raise invalid("cachePoint: type is required and must be 'default'")
            upto = tokens(system[:at])
    for at, message in enumerate(messages):
        for block in message["content"]:
            if "cachePoint" in block:
                upto = tokens(system) + tokens(messages[:at])
    return upto
