"""Bedrock's Converse and ConverseStream APIs on the wire: the request, the answer, the stream's events.

Shapes and names as botocore's service model of bedrock-runtime (2023-09-30) defines them: content
blocks and the stream's events are unions written as an object with one member (`{"text": ...}`,
`{"toolUse": {...}}`), blobs as base64 strings. What this gateway writes is strict and leaves out what
it does not set; what it reads is lenient, so that members added later are skipped.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Base(msgspec.Struct, omit_defaults=True):
    pass


# Request

class CachePoint(msgspec.Struct):
    type: str = "default"  # required on the wire: written even though it is the default


class Source(Base):
    bytes: str  # base64


class Image(Base):
    format: str
    source: Source


class Document(Base):
    format: str
    name: str
    source: Source


class ToolUse(Base):
    toolUseId: str
    name: str
    input: Any


class ToolResultContent(Base):
    text: str | None = None
    json: Any = None
    image: Image | None = None
    document: Document | None = None


class ToolResult(Base):
    toolUseId: str
    content: list[ToolResultContent]
    status: str | None = None


class ReasoningText(Base):
    text: str
    signature: str | None = None


class Reasoning(Base):
    reasoningText: ReasoningText | None = None
    redactedContent: str | None = None


class Content(Base):
    """A ContentBlock: exactly one member is set."""

    text: str | None = None
    image: Image | None = None
    document: Document | None = None
    toolUse: ToolUse | None = None
    toolResult: ToolResult | None = None
    reasoningContent: Reasoning | None = None
    cachePoint: CachePoint | None = None


class Message(Base):
    role: str
    content: list[Content]


class SystemContent(Base):
    text: str | None = None
    cachePoint: CachePoint | None = None


class InferenceConfig(Base):
    maxTokens: int | None = None
    temperature: float | None = None
    topP: float | None = None
    stopSequences: list[str] | None = None


class InputSchema(Base):
    json: Any


class ToolSpec(Base):
    name: str
    inputSchema: InputSchema
    description: str | None = None


class Tool(Base):
    toolSpec: ToolSpec | None = None
    cachePoint: CachePoint | None = None


class Empty(Base):
    pass


class SpecificTool(Base):
    name: str


class ToolChoice(Base):
    auto: Empty | None = None
    any: Empty | None = None
    tool: SpecificTool | None = None


class ToolConfig(Base):
    tools: list[Tool]
    toolChoice: ToolChoice | None = None


class ConverseRequest(Base):
    """The body of Converse and ConverseStream (the model id is in the path)."""

    messages: list[Message]
    system: list[SystemContent] | None = None
    inferenceConfig: InferenceConfig | None = None
    toolConfig: ToolConfig | None = None
    additionalModelRequestFields: dict[str, Any] | None = None


# Answer, read leniently

class TokenUsage(msgspec.Struct):
    inputTokens: int = 0
    outputTokens: int = 0
    totalTokens: int | None = None
    cacheReadInputTokens: int | None = None
    cacheWriteInputTokens: int | None = None


class ReasoningTextIn(msgspec.Struct):
    text: str = ""
    signature: str | None = None


class ReasoningIn(msgspec.Struct):
    reasoningText: ReasoningTextIn | None = None
    redactedContent: str | None = None


class ToolUseIn(msgspec.Struct):
    toolUseId: str = ""
    name: str = ""
    input: Any = None


class ContentIn(msgspec.Struct):
    text: str | None = None
    toolUse: ToolUseIn | None = None
    reasoningContent: ReasoningIn | None = None


class MessageIn(msgspec.Struct):
    role: str = "assistant"
    content: list[ContentIn] = []


class OutputIn(msgspec.Struct):
    message: MessageIn | None = None


class ConverseResponse(msgspec.Struct):
    output: OutputIn
    stopReason: str = "end_turn"
    usage: TokenUsage | None = None


# ConverseStream's events: each frame's payload, its kind in the frame's :event-type header

class ToolUseStart(msgspec.Struct):
    toolUseId: str = ""
    name: str = ""


class BlockStart(msgspec.Struct):
    toolUse: ToolUseStart | None = None


class ToolUseDelta(msgspec.Struct):
    input: str = ""


class ReasoningDelta(msgspec.Struct):
    text: str | None = None
    signature: str | None = None
    redactedContent: str | None = None


class BlockDelta(msgspec.Struct):
    text: str | None = None
    toolUse: ToolUseDelta | None = None
    reasoningContent: ReasoningDelta | None = None


class StreamEvent(msgspec.Struct):
    """Any of messageStart, contentBlockStart, contentBlockDelta, contentBlockStop, messageStop and metadata:
    each fills its own members (a real stream also pads each with a `p` member, skipped here)."""

    role: str | None = None
    contentBlockIndex: int = 0
    start: BlockStart | None = None
    delta: BlockDelta | None = None
    stopReason: str | None = None
    usage: TokenUsage | None = None


class ErrorIn(msgspec.Struct):
    """An error answer's body, and an exception frame's payload."""

    message: str | None = None
    Message: str | None = None  # noqa: N815 - some services capitalise it

    def text(self) -> str:
        return self.message or self.Message or ""
