"""OpenAI's chat completions API on the wire: the request, the answer, its stream's chunks, errors.

Shapes as OpenAI's API reference and its Python SDK's types define them, with the fields
OpenAI-compatible servers add: vLLM's `reasoning_content` (`reasoning` since vLLM 0.10), its
`stop_reason` (the stop string that ended the answer), `top_k` and `chat_template_kwargs`;
LiteLLM's `cache_control` on messages and parts, `thinking` and `thinking_blocks`. The request is
decoded strictly at the top level (an unknown field is a 400 that names it); answers and chunks
read from an upstream leniently.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from gateway.translate.anthropic_wire import CacheControl

# Request

class TextPart(msgspec.Struct, tag="text", tag_field="type", omit_defaults=True):
    text: str
    cache_control: CacheControl | None = None


class ImageURL(msgspec.Struct, omit_defaults=True):
    url: str
    detail: str | None = None


class ImagePart(msgspec.Struct, tag="image_url", tag_field="type", omit_defaults=True):
    image_url: ImageURL
    cache_control: CacheControl | None = None


class FileData(msgspec.Struct, omit_defaults=True):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(msgspec.Struct, tag="file", tag_field="type", omit_defaults=True):
    file: FileData
    cache_control: CacheControl | None = None


class InputAudioPart(msgspec.Struct, tag="input_audio", tag_field="type"):
    input_audio: Any = None


class RefusalPart(msgspec.Struct, tag="refusal", tag_field="type"):
    refusal: str


Part = TextPart | ImagePart | FilePart | InputAudioPart | RefusalPart


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str


class ToolCall(msgspec.Struct):
    id: str
    function: FunctionCall
    type: str = "function"


class ThinkingBlockParam(msgspec.Struct, omit_defaults=True):
    """LiteLLM's `thinking_blocks` entry: an Anthropic thinking block carried through OpenAI's shape."""

    type: str
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class SystemMessage(msgspec.Struct, tag="system", tag_field="role", omit_defaults=True):
    content: str | list[Part]
    name: str | None = None
    cache_control: CacheControl | None = None


class DeveloperMessage(msgspec.Struct, tag="developer", tag_field="role", omit_defaults=True):
    content: str | list[Part]
    name: str | None = None
    cache_control: CacheControl | None = None


class UserMessage(msgspec.Struct, tag="user", tag_field="role", omit_defaults=True):
    content: str | list[Part]
    name: str | None = None
    cache_control: CacheControl | None = None


class AssistantMessage(msgspec.Struct, tag="assistant", tag_field="role", omit_defaults=True):
    content: str | list[Part] | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None
    thinking_blocks: list[ThinkingBlockParam] | None = None
    refusal: str | None = None
    name: str | None = None
    cache_control: CacheControl | None = None
    function_call: Any = None
    audio: Any = None


class ToolMessage(msgspec.Struct, tag="tool", tag_field="role", omit_defaults=True):
    tool_call_id: str
    content: str | list[Part]
    cache_control: CacheControl | None = None


class FunctionMessage(msgspec.Struct, tag="function", tag_field="role"):
    name: str = ""
    content: str | None = None


ChatMessage = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage


class FunctionDef(msgspec.Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(msgspec.Struct, omit_defaults=True):
    type: str
    function: FunctionDef
    cache_control: CacheControl | None = None


class ToolName(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    function: ToolName
    type: str = "function"


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool | None = None


class JsonSchema(msgspec.Struct, omit_defaults=True):
    name: str = "response"
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class ThinkingParam(msgspec.Struct, omit_defaults=True):
    """Anthropic's `thinking` as LiteLLM takes it in OpenAI requests, and z.ai's (no budget)."""

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class ChatRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    messages: list[ChatMessage]
    model: str = ""
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[ChatTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    reasoning_effort: str | None = None
    thinking: ThinkingParam | None = None
    response_format: ResponseFormat | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    continue_final_message: bool | None = None
    add_generation_prompt: bool | None = None
    # Accepted from clients, and not sent to an Anthropic upstream (see the README's translation table).
    n: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None
    functions: Any = None
    function_call: Any = None


# Answer

class ChatUsageIn(msgspec.Struct):
    """OpenAI's usage and the names other servers give cache counts (read by gateway.usage.from_object)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int | None = None
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek's
    cache_read_input_tokens: int | None = None  # LiteLLM's
    cache_creation_input_tokens: int | None = None  # LiteLLM's


class CacheCreationDetails(msgspec.Struct, omit_defaults=True):
    """LiteLLM's split of the cache writes by how long they last, as Anthropic reports it."""

    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class PromptDetails(msgspec.Struct, omit_defaults=True):
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None  # LiteLLM's
    cache_write_tokens: int | None = None  # OpenRouter's
    cache_creation_token_details: CacheCreationDetails | None = None  # LiteLLM's


class CompletionDetails(msgspec.Struct, omit_defaults=True):
    reasoning_tokens: int | None = None


class PartIn(msgspec.Struct):
    type: str = "text"
    text: str | None = None


class ResponseMessageIn(msgspec.Struct):
    content: str | list[PartIn] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    refusal: str | None = None


class FunctionCallIn(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class ToolCallIn(msgspec.Struct):
    id: str | None = None
    function: FunctionCallIn | None = None
    index: int | None = None
    type: str | None = None


class ErrorIn(msgspec.Struct):
    message: str = ""
    type: str | None = None
    param: str | None = None
    code: int | str | None = None


class ChoiceIn(msgspec.Struct):
    message: ResponseMessageIn | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None  # vLLM: the stop string (or token id) that ended the answer


class ChatCompletionIn(msgspec.Struct):
    id: str = ""
    model: str = ""
    created: int = 0
    choices: list[ChoiceIn] = []
    usage: ChatUsageIn | None = None
    error: ErrorIn | None = None


# Stream chunks, as an upstream writes them

class DeltaIn(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    refusal: str | None = None


class ChunkChoiceIn(msgspec.Struct):
    index: int = 0
    delta: DeltaIn | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


class ChunkIn(msgspec.Struct):
    id: str = ""
    model: str = ""
    created: int = 0
    choices: list[ChunkChoiceIn] | None = None
    usage: ChatUsageIn | None = None
    error: ErrorIn | None = None
    # Some servers write an error as the event's whole object: {"object": "error", "message": ...}.
    object: str = ""
    message: str | None = None
    type: str | None = None
    code: int | str | None = None


# Answer and chunks, as this gateway writes them (an Anthropic upstream's translated)

class ChatUsage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None
    # LiteLLM's names for Anthropic's cache counts, kept so that its clients find them.
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class ResponseMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None
    thinking_blocks: list[ThinkingBlockParam] | None = None


class Choice(msgspec.Struct):
    index: int
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: ChatUsage


class FunctionDelta(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, omit_defaults=True):
    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class Delta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    thinking_blocks: list[ThinkingBlockParam] | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: Delta
    finish_reason: str | None
    logprobs: None = None


class Chunk(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]


class UsageChunk(msgspec.Struct, kw_only=True):
    """The last chunk before `[DONE]` when the client asked for `stream_options.include_usage`."""

    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: ChatUsage


class Error(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(msgspec.Struct):
    error: Error
