"""Anthropic's Messages API on the wire: the request, the answer, and the stream's events.

Shapes as Anthropic's API reference and its Python SDK's types (anthropic/types/) define them.
Requests are decoded strictly at the top level (an unknown field is a 400 that names it) and
leniently inside content blocks, whose newer fields clients echo back from earlier answers.
Answers and events read from an Anthropic upstream are decoded leniently: a block or event type
this module does not know is kept as its `type` and skipped by the translators, as Anthropic's
versioning policy asks of clients.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# Request

class CacheControl(msgspec.Struct, omit_defaults=True):
    type: str = "ephemeral"
    ttl: str | None = None


class Base64Source(msgspec.Struct, tag="base64", tag_field="type"):
    media_type: str
    data: str


class URLSource(msgspec.Struct, tag="url", tag_field="type"):
    url: str


class TextSource(msgspec.Struct, tag="text", tag_field="type"):
    data: str
    media_type: str = "text/plain"


class FileSource(msgspec.Struct, tag="file", tag_field="type"):
    file_id: str


class ContentSource(msgspec.Struct, tag="content", tag_field="type"):
    content: str | list[Any]


ImageSource = Base64Source | URLSource | FileSource
DocumentSource = Base64Source | URLSource | TextSource | FileSource | ContentSource


class TextBlock(msgspec.Struct, tag="text", tag_field="type", omit_defaults=True):
    text: str
    cache_control: CacheControl | None = None
    citations: list[Any] | None = None


class ImageBlock(msgspec.Struct, tag="image", tag_field="type", omit_defaults=True):
    source: ImageSource
    cache_control: CacheControl | None = None


class DocumentBlock(msgspec.Struct, tag="document", tag_field="type", omit_defaults=True):
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    citations: Any = None
    cache_control: CacheControl | None = None


class ToolUseBlock(msgspec.Struct, tag="tool_use", tag_field="type", omit_defaults=True):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlock(msgspec.Struct, tag="tool_result", tag_field="type", omit_defaults=True):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock | DocumentBlock] = ""
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(msgspec.Struct, tag="thinking", tag_field="type", omit_defaults=True):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(msgspec.Struct, tag="redacted_thinking", tag_field="type"):
    data: str


# Server tools' blocks, search results and the rest are refused by the decoder, naming the block's `type`.
Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


class MessageParam(msgspec.Struct):
    # "system": Anthropic's mid-conversation system message (beta mid-conversation-system-2026-04-07),
    # which Claude Code sends after the first user turn.
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class Tool(msgspec.Struct, omit_defaults=True):
    name: str
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None  # "custom", or left out, for a client tool; a server tool's versioned name otherwise
    cache_control: CacheControl | None = None
    strict: bool | None = None


class ToolChoiceAuto(msgspec.Struct, tag="auto", tag_field="type", omit_defaults=True):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(msgspec.Struct, tag="any", tag_field="type", omit_defaults=True):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(msgspec.Struct, tag="tool", tag_field="type", omit_defaults=True):
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(msgspec.Struct, tag="none", tag_field="type"):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class ThinkingEnabled(msgspec.Struct, tag="enabled", tag_field="type", omit_defaults=True):
    budget_tokens: int
    display: str | None = None


class ThinkingDisabled(msgspec.Struct, tag="disabled", tag_field="type"):
    pass


class ThinkingAdaptive(msgspec.Struct, tag="adaptive", tag_field="type", omit_defaults=True):
    display: str | None = None


Thinking = ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive


class Metadata(msgspec.Struct, omit_defaults=True):
    user_id: str | None = None


class JsonOutputFormat(msgspec.Struct, tag="json_schema", tag_field="type"):
    schema: dict[str, Any]


class OutputConfig(msgspec.Struct, omit_defaults=True):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JsonOutputFormat | None = None


class ContextEdit(msgspec.Struct):
    """One of context_management's edits: `clear_thinking_20251015`, `clear_tool_uses_20250919`, ...; `keep`
    is "all" or how many turns or tool uses to keep."""

    type: str
    keep: Any = None


class ContextManagement(msgspec.Struct, forbid_unknown_fields=True):
    edits: list[ContextEdit] = []


class MessagesRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    model: str
    max_tokens: int
    messages: list[MessageParam]
    system: str | list[TextBlock] | None = None
    metadata: Metadata | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    cache_control: CacheControl | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    # Fields of the API that an OpenAI-style upstream cannot honour: decoded so that the refusal names them.
    container: Any = None
    mcp_servers: Any = None
    context_management: ContextManagement | None = None
    inference_geo: str | None = None
    speed: Literal["standard", "fast"] | None = None
    diagnostics: Any = None


# Answer, as this gateway writes it (an OpenAI upstream's answer translated)

class Usage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class TextOut(msgspec.Struct, tag="text", tag_field="type"):
    text: str


class ThinkingOut(msgspec.Struct, tag="thinking", tag_field="type"):
    thinking: str
    signature: str = ""


class ToolUseOut(msgspec.Struct, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: Any


BlockOut = TextOut | ThinkingOut | ToolUseOut


class Message(msgspec.Struct, tag="message", tag_field="type"):
    id: str
    role: Literal["assistant"]
    model: str
    content: list[BlockOut]
    stop_reason: str | None
    stop_sequence: str | None
    usage: Usage


# Stream events, as this gateway writes them

class MessageStart(msgspec.Struct, tag="message_start", tag_field="type"):
    message: Message


class ContentBlockStart(msgspec.Struct, tag="content_block_start", tag_field="type"):
    index: int
    content_block: BlockOut


class TextDelta(msgspec.Struct, tag="text_delta", tag_field="type"):
    text: str


class ThinkingDelta(msgspec.Struct, tag="thinking_delta", tag_field="type"):
    thinking: str


class InputJsonDelta(msgspec.Struct, tag="input_json_delta", tag_field="type"):
    partial_json: str


class SignatureDelta(msgspec.Struct, tag="signature_delta", tag_field="type"):
    signature: str


class ContentBlockDelta(msgspec.Struct, tag="content_block_delta", tag_field="type"):
    index: int
    delta: TextDelta | ThinkingDelta | InputJsonDelta | SignatureDelta


class ContentBlockStop(msgspec.Struct, tag="content_block_stop", tag_field="type"):
    index: int


class StopDelta(msgspec.Struct):
    stop_reason: str | None
    stop_sequence: str | None


class MessageDelta(msgspec.Struct, tag="message_delta", tag_field="type"):
    delta: StopDelta
    usage: Usage


class MessageStop(msgspec.Struct, tag="message_stop", tag_field="type"):
    pass


class Ping(msgspec.Struct, tag="ping", tag_field="type"):
    pass


class ErrorBody(msgspec.Struct):
    type: str
    message: str


class ErrorEvent(msgspec.Struct, tag="error", tag_field="type"):
    error: ErrorBody


StreamEvent = (MessageStart | ContentBlockStart | ContentBlockDelta | ContentBlockStop | MessageDelta | MessageStop
               | Ping | ErrorEvent)


# An Anthropic upstream's answer and events, read leniently

class OutputDetailsIn(msgspec.Struct):
    thinking_tokens: int | None = None


class CacheCreationIn(msgspec.Struct):
    """Of the cache writes, those kept five minutes and those kept an hour (priced apart)."""

    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class UsageIn(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: CacheCreationIn | None = None
    output_tokens_details: OutputDetailsIn | None = None


class BlockIn(msgspec.Struct):
    """Any content block: the fields of the kinds translated, `type` for the rest."""

    type: str
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class MessageIn(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[BlockIn] = []
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: UsageIn | None = None


class DeltaIn(msgspec.Struct):
    """A content block's delta and a message_delta's `delta` in one: each event fills its own fields."""

    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class ErrorIn(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class EventIn(msgspec.Struct):
    """Any stream event: `type` says which of the other fields it fills."""

    type: str
    index: int = 0
    message: MessageIn | None = None
    content_block: BlockIn | None = None
    delta: DeltaIn | None = None
    usage: UsageIn | None = None
    error: ErrorIn | None = None
