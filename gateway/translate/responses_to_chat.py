"""OpenAI's Responses API to a deployment that only speaks chat completions, and its answer back.

Mapped: `instructions` (a system message first), `input` as text or items (messages of every role with text
and image parts, `function_call` items as the assistant's tool calls, `function_call_output` items as tool
messages; `reasoning` items are left out), function tools and `tool_choice`, `max_output_tokens`,
`temperature`, `top_p`, `parallel_tool_calls`, `user`, `reasoning.effort`, `text.format` (JSON schema or
object). A `custom` tool (free text in, as Codex's apply_patch) becomes a function tool with one string
argument, `input`, its grammar told in that argument's description; its calls come back as
`custom_tool_call` items carrying the raw string, and `custom_tool_call` / `custom_tool_call_output` items
go up as the call and its tool message. Refused with a 400 naming it: other tool types (web search, file
search, tool search, namespaces, ...), other item kinds, file inputs, an `include` other than
`reasoning.encrypted_content` (there is no reasoning to encrypt, so that one asks for nothing), and
`previous_response_id` (a translated answer is not stored upstream, so there is nothing to continue; the
client sends the conversation as items instead).
"""

from __future__ import annotations

import secrets
import time

import msgspec
import orjson

from gateway.errors import ApiError, bad_request
from gateway.translate import openai_wire as o
from gateway.translate import responses_wire as r
from gateway.translate.dialect import Dialect
from gateway.usage import Usage

_ANSWER = msgspec.json.Decoder(o.ChatCompletionIn)
_encode = msgspec.json.Encoder().encode
CUSTOM_INPUT = "input"  # the one argument a custom tool's function takes
# What a chat deployment answers without: reasoning it does not return cannot be returned encrypted.
HONOURED_INCLUDES = frozenset({"reasoning.encrypted_content"})


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def responses_request_to_chat(request: r.ResponsesRequest, dialect: Dialect) -> o.ChatRequest:
    if request.previous_response_id is not None:
        raise bad_request("previous_response_id: this model's deployment speaks chat completions and its answers "
                          "are not stored, so there is no earlier response to continue; send the conversation "
                          "as input items instead", "previous_response_id")
    for at, asked in enumerate(request.include or ()):
        if asked not in HONOURED_INCLUDES:
            raise bad_request(f"include[{at}]: {asked!r} is not translated to chat completions (this model's "
                              "deployment speaks only those)", f"include[{at}]")
    messages: list[o.ChatMessage] = []
    if request.instructions:
        messages.append(o.SystemMessage(request.instructions))
    if isinstance(request.input, str):
        messages.append(o.UserMessage(request.input))
    else:
        for at, item in enumerate(request.input):
            _add_item(messages, item, at)
    if not messages:
        raise bad_request("missing required parameter: 'input'", "input")
    chat = o.ChatRequest(messages=messages, model=request.model, temperature=request.temperature,
                         top_p=request.top_p, parallel_tool_calls=request.parallel_tool_calls, user=request.user)
    if request.max_output_tokens is not None:
        if dialect.max_tokens_field == "max_completion_tokens":
            chat.max_completion_tokens = request.max_output_tokens
        else:
            chat.max_tokens = request.max_output_tokens
    if request.tools:
        chat.tools = [_tool(tool, at) for at, tool in enumerate(request.tools)]
    choice = request.tool_choice
    if isinstance(choice, r.ToolChoiceIn):
        if choice.type != "function" or not choice.name:
            raise bad_request(f"tool_choice of type {choice.type!r} is not translated to chat completions; "
                              "name a function tool, or use auto, none or required", "tool_choice")
        chat.tool_choice = o.NamedToolChoice(o.ToolName(choice.name))
    else:
        chat.tool_choice = choice
    if request.reasoning is not None and request.reasoning.effort:
        chat.reasoning_effort = request.reasoning.effort
    form = request.text.format if request.text is not None else None
    if form is not None and form.type == "json_schema":
        chat.response_format = o.ResponseFormat("json_schema", o.JsonSchema(
            form.name or "response", form.schema, form.description, form.strict))
    elif form is not None and form.type == "json_object":
        chat.response_format = o.ResponseFormat("json_object")
    if request.stream:
        chat.stream = True
        chat.stream_options = o.StreamOptions(include_usage=True)  # usage comes in the last chunk then
    return chat


def _add_item(messages: list[o.ChatMessage], item: r.ItemIn, at: int) -> None:
    where = f"input[{at}]"
    kind = item.type
    if kind == "message":
        role = item.role
        if role in ("system", "developer"):
            messages.append(o.SystemMessage(_parts(item.content, where)))
        elif role == "user":
            messages.append(o.UserMessage(_parts(item.content, where)))
        elif role == "assistant":
            content = _parts(item.content, where)
            messages.append(o.AssistantMessage(content=content or None))
        else:
            raise bad_request(f"{where}.role must be user, assistant, system or developer", f"{where}.role")
    elif kind == "function_call":
        if not item.call_id or item.name is None:
            raise bad_request(f"{where}: a function_call item needs its call_id and name", where)
        _add_call(messages, o.ToolCall(item.call_id, o.FunctionCall(item.name, item.arguments or "")))
    elif kind == "function_call_output":
        if not item.call_id:
            raise bad_request(f"{where}: a function_call_output item needs its call_id", where)
        output = item.output if isinstance(item.output, str) else _text_of(item.output or [], where)
        messages.append(o.ToolMessage(item.call_id, output))
    elif kind == "custom_tool_call":
        if not item.call_id or item.name is None or item.input is None:
            raise bad_request(f"{where}: a custom_tool_call item needs its call_id, name and input", where)
        _add_call(messages, o.ToolCall(item.call_id, o.FunctionCall(
            item.name, orjson.dumps({CUSTOM_INPUT: item.input}).decode())))
    elif kind == "custom_tool_call_output":
        if not item.call_id:
            raise bad_request(f"{where}: a custom_tool_call_output item needs its call_id", where)
        output = item.output if isinstance(item.output, str) else _text_of(item.output or [], where)
        messages.append(o.ToolMessage(item.call_id, output))
    elif kind != "reasoning":  # earlier reasoning is the model's own business; chat servers take none
        raise bad_request(f"{where}: items of type {kind!r} are not translated to chat completions", where)


def _add_call(messages: list[o.ChatMessage], call: o.ToolCall) -> None:
    last = messages[-1] if messages else None
    if isinstance(last, o.AssistantMessage):
        last.tool_calls = [*(last.tool_calls or []), call]  # one assistant turn, however many calls
    else:
        messages.append(o.AssistantMessage(tool_calls=[call]))


def _parts(content: str | list[r.ContentIn] | None, where: str) -> str | list[o.Part]:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[o.Part] = []
    for at, part in enumerate(content):
        if part.type in ("input_text", "output_text", "text"):
            parts.append(o.TextPart(part.text or ""))
        elif part.type == "refusal":
            parts.append(o.TextPart(part.refusal or ""))
        elif part.type == "input_image" and part.image_url:
            parts.append(o.ImagePart(o.ImageURL(part.image_url, part.detail)))
        else:
            raise bad_request(f"{where}.content[{at}]: {part.type!r} parts are not translated to chat completions "
                              "(text and images by URL are)", f"{where}.content")
    if all(isinstance(p, o.TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, o.TextPart))
    return parts


def _text_of(content: list[r.ContentIn], where: str) -> str:
    found = _parts(content, where)
    if not isinstance(found, str):
        raise bad_request(f"{where}.output: only text is translated into a tool result", f"{where}.output")
    return found


def _tool(tool: r.ToolIn, at: int) -> o.ChatTool:
    if tool.type == "custom" and tool.name:
        return o.ChatTool("function", o.FunctionDef(tool.name, tool.description, _custom_parameters(tool.format)))
    if tool.type != "function" or not tool.name:
        raise bad_request(f"tools[{at}]: tools of type {tool.type!r} are not translated to chat completions; "
                          "function and custom tools are (Codex leaves out its web_search with "
                          "`web_search = \"disabled\"`, and its tool_search or namespace of agent tools with "
                          "`[agents] enabled = false`)", f"tools[{at}]")
    return o.ChatTool("function", o.FunctionDef(tool.name, tool.description, tool.parameters, tool.strict))


def _custom_parameters(form: r.CustomFormat | None) -> dict[str, object]:
    said = "The tool's whole input, as free text."
    if form is not None and form.type == "grammar" and form.definition:
        said = f"The tool's whole input, text in this {form.syntax or 'lark'} grammar:\n{form.definition}"
    return {"type": "object", "properties": {CUSTOM_INPUT: {"type": "string", "description": said}},
            "required": [CUSTOM_INPUT], "additionalProperties": False}


def custom_input(arguments: str) -> str:
    """A custom tool's raw input from its function's arguments; the arguments as they are when they are not
    the one-string object the tool was offered as."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    found = parsed.get(CUSTOM_INPUT) if isinstance(parsed, dict) else None
    return found if isinstance(found, str) else arguments


# The answer

class Shell:
    """What every response object of one request repeats from the request: made once, filled per object."""

    __slots__ = ("id", "created_at", "request", "model", "custom")

    def __init__(self, request: r.ResponsesRequest, model: str) -> None:
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.request = request
        self.model = model
        self.custom = frozenset(tool.name for tool in request.tools or () if tool.type == "custom" and tool.name)

    def call(self, call_id: str, name: str, arguments: str, status: str) -> r.FunctionCallOut | r.CustomToolCallOut:
        """A tool call as its item: a custom tool's carries its raw input."""
        if name in self.custom:
            return r.CustomToolCallOut(id=new_id("ctc"), call_id=call_id, name=name, input=custom_input(arguments),
                                       status=status)
        return r.FunctionCallOut(id=new_id("fc"), call_id=call_id, name=name, arguments=arguments, status=status)

    def response(self, status: str, output: list[r.OutputItem], usage: r.ResponseUsage | None,
                 incomplete: str | None = None) -> r.ResponseObject:
        request = self.request
        return r.ResponseObject(
            id=self.id, created_at=self.created_at, status=status,
            incomplete_details=r.IncompleteDetails(incomplete) if incomplete else None,
            instructions=request.instructions, max_output_tokens=request.max_output_tokens, model=self.model,
            output=output, parallel_tool_calls=request.parallel_tool_calls is not False,
            reasoning=request.reasoning or r.Reasoning(), temperature=request.temperature,
            text=r.TextOut(request.text.format if request.text is not None and request.text.format is not None
                           else r.FormatOut()),
            tool_choice=msgspec.to_builtins(request.tool_choice) if request.tool_choice is not None else "auto",
            tools=[msgspec.to_builtins(tool) for tool in request.tools or ()], top_p=request.top_p,
            usage=usage, user=request.user, metadata=request.metadata or {})


def responses_usage(usage: o.ChatUsageIn | None) -> r.ResponseUsage | None:
    if usage is None:
        return None
    cached = usage.prompt_tokens_details.cached_tokens or 0 if usage.prompt_tokens_details is not None else 0
    reasoning = usage.completion_tokens_details.reasoning_tokens or 0 \
        if usage.completion_tokens_details is not None else 0
    total = usage.total_tokens if usage.total_tokens is not None else usage.prompt_tokens + usage.completion_tokens
    return r.ResponseUsage(usage.prompt_tokens, r.InputDetails(cached), usage.completion_tokens,
                           r.OutputDetails(reasoning), total)


def settled_usage(usage: r.ResponseUsage | None) -> Usage | None:
    if usage is None:
        return None
    return Usage(usage.input_tokens, usage.output_tokens, usage.total_tokens,
                 cache_read_tokens=min(usage.input_tokens_details.cached_tokens, usage.input_tokens),
                 reasoning_tokens=min(usage.output_tokens_details.reasoning_tokens, usage.output_tokens))


def incomplete_reason(finish_reason: str | None) -> str | None:
    return "max_output_tokens" if finish_reason == "length" else \
        "content_filter" if finish_reason == "content_filter" else None


def translate_chat_answer(raw: bytes, shell: Shell) -> tuple[bytes, Usage | None]:
    """A chat completion as a Responses object, and its usage; one that cannot be read is a 502."""
    try:
        completion = _ANSWER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ApiError(502, f"the upstream's answer is not a chat completion ({exc})", "api_error") from None
    if not completion.choices or completion.choices[0].message is None:
        raise ApiError(502, "the upstream's answer has no choices", "api_error")
    choice = completion.choices[0]
    message = choice.message
    assert message is not None
    output: list[r.OutputItem] = []
    text = message.content if isinstance(message.content, str) else \
        "".join(part.text or "" for part in message.content or ())
    if message.refusal:
        text += message.refusal
    if text:
        output.append(r.MessageOut(id=new_id("msg"), status="completed", content=[r.OutputText(text)]))
    for call in message.tool_calls or ():
        function = call.function or o.FunctionCallIn()
        output.append(shell.call(call.id or new_id("call"), function.name or "", function.arguments or "",
                                 "completed"))
    usage = responses_usage(completion.usage)
    reason = incomplete_reason(choice.finish_reason)
    answer = shell.response("incomplete" if reason else "completed", output, usage, reason)
    return _encode(answer), settled_usage(usage)

