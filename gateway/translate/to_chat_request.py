"""A Messages API request, as an OpenAI-compatible upstream takes it.

What cannot be said in OpenAI's chat API is refused with a 400 that names the field, never left
out unnoticed; what is left out on purpose is listed in the README ("Translation: what maps and
what does not"), each with its reason.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from gateway.errors import ApiError, bad_request
from gateway.translate import anthropic_wire as a
from gateway.translate import openai_wire as o
from gateway.translate.dialect import GENERIC, Dialect

# Anthropic's output_config.effort, in the words reasoning_effort takes everywhere.
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_DECODER = msgspec.json.Decoder(a.MessagesRequest)
FIELD_NAMED = re.compile(r"Object (?:contains unknown|missing required) field `([^`]*)`")


def decode_messages_request(body: bytes | dict[str, Any]) -> a.MessagesRequest:
    """The request, typed; a 400 naming the field when it is not a Messages API request."""
    try:
        if isinstance(body, bytes):
            return _DECODER.decode(body)
        return msgspec.convert(body, a.MessagesRequest)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"the request body is not JSON: {exc}") from None


def invalid(exc: msgspec.ValidationError) -> ApiError:
    """A 400 with msgspec's words, `param` the path it names (down to the field, when one is unknown or missing)."""
    text = str(exc)
    _, at, path = text.rpartition(" - at `$")
    param = path.rstrip("`").lstrip(".") if at else ""
    named = FIELD_NAMED.match(text)
    if named is not None:
        param = f"{param}.{named[1]}" if param else named[1]
    return bad_request(f"invalid request: {text}", param or None)


def effort_for_budget(budget: int) -> str:
    """LiteLLM's budgets for each effort (low 1024, medium 2048, high 4096), read the other way."""
    if budget <= 1024:
        return "low"
    if budget <= 2048:
        return "medium"
    return "high"


def messages_request_to_chat(request: a.MessagesRequest, dialect: Dialect = GENERIC) -> o.ChatRequest:
    _refuse_unexpressible(request)
    messages: list[o.ChatMessage] = []
    system = _system_text(request.system)
    if system:
        messages.append(o.SystemMessage(system))
    for turn, message in enumerate(request.messages):
        if message.role == "user":
            messages.extend(_user_turn(turn, message.content))
        elif message.role == "system":
            messages.append(o.SystemMessage(_mid_system(turn, message.content)))
        else:
            messages.append(_assistant_turn(turn, message.content, dialect))
    chat = o.ChatRequest(messages, model=request.model, temperature=request.temperature, top_p=request.top_p,
                         top_k=request.top_k)
    if dialect.max_tokens_field == "max_completion_tokens":
        chat.max_completion_tokens = request.max_tokens
    else:
        chat.max_tokens = request.max_tokens
    if request.stop_sequences:
        chat.stop = list(request.stop_sequences)
    if request.metadata is not None and request.metadata.user_id is not None:
        chat.user = request.metadata.user_id
    if request.stream:
        chat.stream = True
        chat.stream_options = o.StreamOptions(include_usage=True)
    if request.tools:
        chat.tools = [_tool(index, tool) for index, tool in enumerate(request.tools)]
    if request.tool_choice is not None:
        chat.tool_choice, parallel = _tool_choice(request.tool_choice)
        if parallel is False and request.tools:
            chat.parallel_tool_calls = False
    output = request.output_config
    if output is not None and output.format is not None:
        chat.response_format = o.ResponseFormat("json_schema", o.JsonSchema("output", output.format.schema,
                                                                            strict=True))
    _thinking(chat, request, dialect)
    if dialect.continues_prefill and request.messages and request.messages[-1].role == "assistant":
        chat.continue_final_message = True
        chat.add_generation_prompt = False
    return chat


def _refuse_unexpressible(request: a.MessagesRequest) -> None:
    for name, value, why in (
        ("container", request.container, "a code-execution container exists only on Anthropic's API"),
        ("mcp_servers", request.mcp_servers, "MCP servers are run by Anthropic's API, not by this upstream"),
        ("context_management", _context_edits(request.context_management),
         "context editing is done by Anthropic's API (only clear_thinking keeping all turns, which edits nothing, "
         "is accepted)"),
        ("inference_geo", request.inference_geo, "this upstream cannot promise where it runs"),
    ):
        if value is not None:
            raise bad_request(f"{name} cannot be sent to model {request.model!r}, which is served by an "
                              f"OpenAI-compatible upstream: {why}", name)
    if request.speed == "fast":
        raise bad_request(f"speed 'fast' cannot be honoured by model {request.model!r}, which is served by an "
                          "OpenAI-compatible upstream", "speed")


def _context_edits(asked: a.ContextManagement | None) -> a.ContextManagement | None:
    """The edits that would change the prompt. Claude Code asks on every turn to clear thinking while keeping
    all of it, which clears nothing: that alone is left out, as a no-op."""
    if asked is None or all(edit.type.startswith("clear_thinking_") and edit.keep == "all" for edit in asked.edits):
        return None
    return asked


def _mid_system(turn: int, content: str | list[a.Block]) -> str:
    """A system message between the turns (Anthropic's mid-conversation system message): text only, as
    OpenAI's system messages are, kept where it is."""
    if isinstance(content, str):
        return content
    texts = []
    for at, block in enumerate(content):
        if not isinstance(block, a.TextBlock):
            where = f"messages[{turn}].content[{at}]"
            raise bad_request(f"{where}: a system message holds text only", f"{where}.type")
        texts.append(block.text)
    return "\n\n".join(texts)


def _system_text(system: str | list[a.TextBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n\n".join(block.text for block in system)


def _user_turn(turn: int, content: str | list[a.Block]) -> list[o.ChatMessage]:
    if isinstance(content, str):
        return [o.UserMessage(content)]
    results: list[o.ChatMessage] = []
    parts: list[o.Part] = []
    for at, block in enumerate(content):
        where = f"messages[{turn}].content[{at}]"
        if isinstance(block, a.ToolResultBlock):
            text, attachments = _tool_result(where, block)
            results.append(o.ToolMessage(block.tool_use_id, text))
            parts.extend(attachments)
        elif isinstance(block, a.TextBlock | a.ImageBlock | a.DocumentBlock):
            parts.extend(_parts(where, block))
        else:
            raise bad_request(f"{where}: a {_type_name(block)} block cannot be in a user turn", f"{where}.type")
    if parts:
        if len(parts) == 1 and isinstance(parts[0], o.TextPart):
            results.append(o.UserMessage(parts[0].text))
        else:
            results.append(o.UserMessage(parts))
    return results


def _tool_result(where: str, block: a.ToolResultBlock) -> tuple[str, list[o.Part]]:
    """The text a tool message carries, and the images or documents the tool returned, which OpenAI's API
    takes only in a user message: they follow the tool messages in one."""
    attachments: list[o.Part] = []
    if isinstance(block.content, str):
        text = block.content
    else:
        texts = []
        for at, item in enumerate(block.content):
            for part in _parts(f"{where}.content[{at}]", item):
                if isinstance(part, o.TextPart):
                    texts.append(part.text)
                else:
                    attachments.append(part)
        text = "\n".join(texts)
    if block.is_error:
        text = f"Error: {text}" if text else "Error"
    return text, attachments


def _parts(where: str, block: a.TextBlock | a.ImageBlock | a.DocumentBlock) -> list[o.Part]:
    if isinstance(block, a.TextBlock):
        return [o.TextPart(block.text)]
    if isinstance(block, a.ImageBlock):
        source = block.source
        if isinstance(source, a.Base64Source):
            return [o.ImagePart(o.ImageURL(f"data:{source.media_type};base64,{source.data}"))]
        if isinstance(source, a.URLSource):
            return [o.ImagePart(o.ImageURL(source.url))]
        raise bad_request(f"{where}.source: images from Anthropic's Files API cannot be sent to an "
                          "OpenAI-compatible upstream; send them as base64 or url", f"{where}.source")
    document = block.source
    if isinstance(document, a.TextSource):
        return [o.TextPart(document.data)]
    if isinstance(document, a.Base64Source):
        filename = block.title or ("document.pdf" if document.media_type == "application/pdf" else "document")
        return [o.FilePart(o.FileData(file_data=f"data:{document.media_type};base64,{document.data}",
                                      filename=filename))]
    if isinstance(document, a.ContentSource):
        if isinstance(document.content, str):
            return [o.TextPart(document.content)]
        try:
            inner = msgspec.convert(document.content, list[a.TextBlock | a.ImageBlock])
        except msgspec.ValidationError as exc:
            raise bad_request(f"{where}.source.content: {exc}", f"{where}.source.content") from None
        return [part for at, item in enumerate(inner) for part in _parts(f"{where}.source.content[{at}]", item)]
    raise bad_request(f"{where}.source: a document by {document.__struct_config__.tag} cannot be sent to an "
                      "OpenAI-compatible upstream; send it as base64 or text", f"{where}.source")


def _assistant_turn(turn: int, content: str | list[a.Block], dialect: Dialect) -> o.AssistantMessage:
    if isinstance(content, str):
        return o.AssistantMessage(content)
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[o.ToolCall] = []
    for at, block in enumerate(content):
        if isinstance(block, a.TextBlock):
            texts.append(block.text)
        elif isinstance(block, a.ToolUseBlock):
            calls.append(o.ToolCall(block.id, o.FunctionCall(block.name, orjson.dumps(block.input).decode())))
        elif isinstance(block, a.ThinkingBlock):
            reasoning.append(block.thinking)
        elif not isinstance(block, a.RedactedThinkingBlock):  # encrypted for Claude: nothing another model can read
            where = f"messages[{turn}].content[{at}]"
            raise bad_request(f"{where}: a {_type_name(block)} block cannot be in an assistant turn", f"{where}.type")
    message = o.AssistantMessage("".join(texts) if texts or not calls else None, calls or None)
    if reasoning and dialect.reasoning_in_history:
        message.reasoning_content = "".join(reasoning)
    return message


def _type_name(block: a.Block) -> str:
    return str(block.__struct_config__.tag)


def _tool(index: int, tool: a.Tool) -> o.ChatTool:
    if tool.type not in (None, "custom"):
        raise bad_request(f"tools[{index}]: {tool.type!r} is a tool Anthropic's API runs itself; an "
                          "OpenAI-compatible upstream cannot run it", f"tools[{index}].type")
    if tool.input_schema is None:
        raise bad_request(f"tools[{index}]: input_schema is required", f"tools[{index}].input_schema")
    return o.ChatTool("function", o.FunctionDef(tool.name, tool.description, tool.input_schema, tool.strict))


def _tool_choice(choice: a.ToolChoice) -> tuple[Any, bool | None]:
    """OpenAI's tool_choice, and parallel_tool_calls (None: the upstream's default)."""
    if isinstance(choice, a.ToolChoiceNone):
        return "none", None
    parallel = False if choice.disable_parallel_tool_use else None
    if isinstance(choice, a.ToolChoiceAuto):
        return "auto", parallel
    if isinstance(choice, a.ToolChoiceAny):
        return "required", parallel
    return o.NamedToolChoice(o.ToolName(choice.name)), parallel


def _thinking(chat: o.ChatRequest, request: a.MessagesRequest, dialect: Dialect) -> None:
    thinking = request.thinking
    asked = request.output_config.effort if request.output_config is not None else None
    effort = EFFORTS[asked] if asked is not None else None
    if isinstance(thinking, a.ThinkingEnabled) and effort is None:
        effort = effort_for_budget(thinking.budget_tokens)
    on = None if thinking is None else not isinstance(thinking, a.ThinkingDisabled)
    if dialect.thinking == "zai":
        if on is not None:
            chat.thinking = o.ThinkingParam("enabled" if on else "disabled")
    elif dialect.thinking == "ollama":
        if on is False:
            chat.reasoning_effort = "none"
        elif on or effort is not None:
            chat.reasoning_effort = effort or "medium"
    else:
        if on is not False and effort is not None:
            chat.reasoning_effort = effort
        if dialect.thinking == "chat_template" and on is not None:
            chat.chat_template_kwargs = {"enable_thinking": on, "thinking": on}
