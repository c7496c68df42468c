"""OpenAI's Responses API on the wire: the request as a client sends it (the part that is translated to chat
completions), and the response object and stream events as the gateway writes them for a deployment that
only speaks chat completions. Shapes follow openai-python's types/responses and OpenAI's API reference.

An input item may come without its `type` (an "easy" message, `{"role": ..., "content": ...}`), so items are
one flat Struct whose `type` defaults to `message` rather than a tagged union.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# Request

class ContentIn(msgspec.Struct):
    """input_text, output_text, input_image, input_file or refusal."""

    type: str
    text: str | None = None
    image_url: str | None = None
    detail: str | None = None
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None
    refusal: str | None = None


class ItemIn(msgspec.Struct):
    """message, function_call, function_call_output, custom_tool_call, custom_tool_call_output or reasoning (the
    kinds a chat deployment can be told)."""

    type: str = "message"
    role: str | None = None
    content: str | list[ContentIn] | None = None
    id: str | None = None
    status: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    input: str | None = None  # a custom tool call's raw input
    output: str | list[ContentIn] | None = None
    summary: Any = None
    encrypted_content: Any = None


class CustomFormat(msgspec.Struct):
    """A custom tool's input: free text, or text in a grammar (`syntax` lark or regex)."""

    type: str = "text"
    syntax: str | None = None
    definition: str | None = None


class ToolIn(msgspec.Struct, omit_defaults=True):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    format: CustomFormat | None = None  # custom tools


class ToolChoiceIn(msgspec.Struct):
    type: str
    name: str | None = None


class Reasoning(msgspec.Struct, omit_defaults=True):
    effort: str | None = None
    summary: str | None = None


class TextFormat(msgspec.Struct, omit_defaults=True):
    type: str = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(msgspec.Struct, omit_defaults=True):
    format: TextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    input: str | list[ItemIn] = []
    instructions: str | None = None
    tools: list[ToolIn] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceIn | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    client_metadata: dict[str, str] | None = None
    user: str | None = None
    reasoning: Reasoning | None = None
    text: TextConfig | None = None
    # Taken and not sent to a chat deployment: the README says which.
    include: list[str] | None = None
    truncation: str | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    stream_options: dict[str, Any] | None = None
    top_logprobs: int | None = None
    background: bool | None = None
    max_tool_calls: int | None = None
    conversation: Any = None
    prompt: Any = None


# Response object, as the gateway writes it

class OutputText(msgspec.Struct, tag="output_text", tag_field="type"):
    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class MessageOut(msgspec.Struct, tag="message", tag_field="type", kw_only=True):
    id: str
    status: str
    role: str = "assistant"
    content: list[OutputText]


class FunctionCallOut(msgspec.Struct, tag="function_call", tag_field="type", kw_only=True):
    id: str
    call_id: str
    name: str
    arguments: str
    status: str


class CustomToolCallOut(msgspec.Struct, tag="custom_tool_call", tag_field="type", kw_only=True):
    id: str
    call_id: str
    name: str
    input: str
    status: str


OutputItem = MessageOut | FunctionCallOut | CustomToolCallOut


class InputDetails(msgspec.Struct):
    cached_tokens: int = 0


class OutputDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    input_tokens_details: InputDetails
    output_tokens: int
    output_tokens_details: OutputDetails
    total_tokens: int


class FormatOut(msgspec.Struct):
    type: str = "text"


class TextOut(msgspec.Struct):
    format: FormatOut | TextFormat


class IncompleteDetails(msgspec.Struct):
    reason: str


class ResponseError(msgspec.Struct):
    code: str
    message: str


class ResponseObject(msgspec.Struct, kw_only=True):
    id: str
    object: str = "response"
    created_at: int
    status: str
    background: bool = False
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: str | None = None
    reasoning: Reasoning
    store: bool = False  # translated answers are not kept: see the README
    temperature: float | None
    text: TextOut
    tool_choice: Any
    tools: list[Any]
    top_p: float | None
    truncation: str = "disabled"
    usage: ResponseUsage | None
    user: str | None
    metadata: dict[str, str]


# Stream events

class ResponseEvent(msgspec.Struct, tag_field="type", kw_only=True):
    sequence_number: int


class Created(ResponseEvent, tag="response.created"):
    response: ResponseObject


class InProgress(ResponseEvent, tag="response.in_progress"):
    response: ResponseObject


class Completed(ResponseEvent, tag="response.completed"):
    response: ResponseObject


class Incomplete(ResponseEvent, tag="response.incomplete"):
    response: ResponseObject


class Failed(ResponseEvent, tag="response.failed"):
    response: ResponseObject


class FailedResponse(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What the gateway knows of a relayed response that failed: its id when it still has it, and the error."""

    id: str | None = None
    object: str
    status: str
    error: ResponseError


class RelayFailed(ResponseEvent, tag="response.failed"):
    """response.failed for a relayed stream cut short."""

    response: FailedResponse


class ItemAdded(ResponseEvent, tag="response.output_item.added"):
    output_index: int
    item: OutputItem


class ItemDone(ResponseEvent, tag="response.output_item.done"):
    output_index: int
    item: OutputItem


class PartAdded(ResponseEvent, tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class PartDone(ResponseEvent, tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class TextDone(ResponseEvent, tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = []


class ArgumentsDone(ResponseEvent, tag="response.function_call_arguments.done"):
    item_id: str
    output_index: int
    name: str
    arguments: str


class CustomInputDelta(ResponseEvent, tag="response.custom_tool_call_input.delta"):
    item_id: str
    output_index: int
    delta: str


class CustomInputDone(ResponseEvent, tag="response.custom_tool_call_input.done"):
    item_id: str
    output_index: int
    input: str


class ErrorEvent(ResponseEvent, tag="error"):
    code: str | None
    message: str
    param: str | None = None


class TextDelta(ResponseEvent, tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = []


class ArgumentsDelta(ResponseEvent, tag="response.function_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str


StreamEvent = (Created | InProgress | Completed | Incomplete | Failed | ItemAdded | ItemDone | PartAdded | PartDone
               | TextDelta | TextDone | ArgumentsDelta | ArgumentsDone | CustomInputDelta | CustomInputDone
               | ErrorEvent)
