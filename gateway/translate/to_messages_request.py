"""An OpenAI chat completions request, as Anthropic's Messages API takes it.

System and developer messages become `system`; tool results join the user turn after the tool
calls, first in it as Anthropic requires; turns of one role in a row become one turn. LiteLLM's
`cache_control` on messages and parts is carried to the blocks, so prompt caching works through
the translation. What Anthropic cannot do is a 400 naming the field; what is accepted and not
sent is listed in the README ("Translation: what maps and what does not").
"""

from __future__ import annotations

import binascii
from typing import Any

import msgspec
import orjson

from gateway.errors import bad_request
from gateway.translate import anthropic_wire as a
from gateway.translate import openai_wire as o
from gateway.translate.to_chat_request import invalid

# Anthropic requires max_tokens; LiteLLM's default for its Anthropic models, so that answers stay as long.
DEFAULT_MAX_TOKENS = 4096
# LiteLLM's thinking budgets for each reasoning_effort (Anthropic's minimum budget is 1024).
BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
MIN_BUDGET = 1024
_DECODER = msgspec.json.Decoder(o.ChatRequest)
UserBlock = a.TextBlock | a.ImageBlock | a.DocumentBlock


def decode_chat_request(body: bytes | dict[str, Any]) -> o.ChatRequest:
    """The request, typed; a 400 naming the field when it is not a chat completions request."""
    try:
        if isinstance(body, bytes):
            return _DECODER.decode(body)
        return msgspec.convert(body, o.ChatRequest)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"the request body is not JSON: {exc}") from None


def chat_request_to_messages(request: o.ChatRequest, default_max_tokens: int = DEFAULT_MAX_TOKENS
                             ) -> a.MessagesRequest:
    _refuse_unexpressible(request)
    system: list[a.TextBlock] = []
    turns: list[a.MessageParam] = []
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        if isinstance(message, o.SystemMessage | o.DeveloperMessage):
            system.extend(_with_cache(_system_blocks(where, message.content), message.cache_control))
        elif isinstance(message, o.UserMessage):
            _append(turns, "user", _with_cache(_user_blocks(where, message.content), message.cache_control))
        elif isinstance(message, o.AssistantMessage):
            blocks = _assistant_blocks(where, message)
            if blocks:
                _append(turns, "assistant", _with_cache(blocks, message.cache_control))
        elif isinstance(message, o.ToolMessage):
            result = _tool_result(where, message)
            _append(turns, "user", [result])
        else:
            raise bad_request(f"{where}: function messages are the deprecated form of tool messages; send the "
                              "function's answer as a tool message", f"{where}.role")
    asked = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    messages = a.MessagesRequest(request.model, asked if asked is not None else default_max_tokens, turns,
                                 temperature=request.temperature, top_p=request.top_p, top_k=request.top_k)
    if system:
        messages.system = system
    if request.stop is not None:
        messages.stop_sequences = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    user = request.user or request.safety_identifier
    if user:
        messages.metadata = a.Metadata(user)
    if request.stream:
        messages.stream = True
    if request.tools:
        messages.tools = [_tool(index, tool) for index, tool in enumerate(request.tools)]
    messages.tool_choice = _tool_choice(request)
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema is None:
            raise bad_request("response_format.json_schema.schema is required", "response_format.json_schema")
        messages.output_config = a.OutputConfig(format=a.JsonOutputFormat(fmt.json_schema.schema))
    _thinking(messages, request, asked is None)
    return messages


def _refuse_unexpressible(request: o.ChatRequest) -> None:
    model = request.model
    for name, refused, why in (
        ("n", request.n not in (None, 1), "Anthropic's API writes one answer a request"),
        ("logprobs", bool(request.logprobs), "Anthropic's API gives no log probabilities"),
        ("top_logprobs", bool(request.top_logprobs), "Anthropic's API gives no log probabilities"),
        ("presence_penalty", bool(request.presence_penalty), "Anthropic's API has no penalties"),
        ("frequency_penalty", bool(request.frequency_penalty), "Anthropic's API has no penalties"),
        ("logit_bias", bool(request.logit_bias), "Anthropic's API has no logit bias"),
        ("modalities", request.modalities not in (None, ["text"]), "Anthropic's API answers in text only"),
        ("audio", request.audio is not None, "Anthropic's API answers in text only"),
        ("prediction", request.prediction is not None, "Anthropic's API has no predicted outputs"),
        ("web_search_options", request.web_search_options is not None,
         "web search is a server tool of Anthropic's API, which this gateway does not translate"),
        ("functions", request.functions is not None, "use `tools`, of which `functions` is the deprecated form"),
        ("function_call", request.function_call is not None,
         "use `tool_choice`, of which `function_call` is the deprecated form"),
        ("chat_template_kwargs", request.chat_template_kwargs is not None, "Anthropic's API has no chat template"),
        ("continue_final_message", bool(request.continue_final_message),
         "Anthropic's API continues a final assistant message by itself"),
        ("add_generation_prompt", request.add_generation_prompt is False, "Anthropic's API has no chat template"),
    ):
        if refused:
            raise bad_request(f"{name} cannot be sent to model {model!r}, which is served by Anthropic's Messages "
                              f"API: {why}", name)
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_object":
        raise bad_request(f"response_format json_object cannot be sent to model {model!r}, which is served by "
                          "Anthropic's Messages API: give the JSON schema the answer must follow (json_schema)",
                          "response_format")


def _append(turns: list[a.MessageParam], role: str, blocks: list[a.Block]) -> None:
    """Anthropic merges turns of one role in a row; merging here keeps tool results in the turn they answer."""
    if turns and turns[-1].role == role and isinstance(turns[-1].content, list):
        turns[-1].content.extend(blocks)
    else:
        turns.append(a.MessageParam("user" if role == "user" else "assistant", blocks))


def _with_cache(blocks: list[Any], cache: a.CacheControl | None) -> list[Any]:
    """A message's own cache_control (LiteLLM's place for it) marks its last block, where Anthropic's goes."""
    if cache is not None and blocks and getattr(blocks[-1], "cache_control", cache) is None:
        blocks[-1].cache_control = cache
    return blocks


def _system_blocks(where: str, content: str | list[o.Part]) -> list[a.TextBlock]:
    if isinstance(content, str):
        return [a.TextBlock(content)] if content else []
    blocks = []
    for at, part in enumerate(content):
        if not isinstance(part, o.TextPart):
            raise bad_request(f"{where}.content[{at}]: a system message holds text only", f"{where}.content[{at}]")
        if part.text:
            blocks.append(a.TextBlock(part.text, part.cache_control))
    return blocks


def _user_blocks(where: str, content: str | list[o.Part]) -> list[a.Block]:
    if isinstance(content, str):
        return [a.TextBlock(content)]
    return [_user_block(f"{where}.content[{at}]", part) for at, part in enumerate(content)]


def _user_block(where: str, part: o.Part) -> UserBlock:
    if isinstance(part, o.TextPart):
        return a.TextBlock(part.text, part.cache_control)
    if isinstance(part, o.ImagePart):
        url = part.image_url.url
        if url.startswith("data:"):
            media_type, data = _data_url(where, url)
            return a.ImageBlock(a.Base64Source(media_type, data), part.cache_control)
        if url.startswith(("http://", "https://")):
            return a.ImageBlock(a.URLSource(url), part.cache_control)
        raise bad_request(f"{where}.image_url.url: an image is a data: URL or an http(s) URL", f"{where}.image_url")
    if isinstance(part, o.FilePart):
        if part.file.file_data is None:
            raise bad_request(f"{where}.file: OpenAI's uploaded files cannot be read by Anthropic's API; send the "
                              "file's contents as file_data", f"{where}.file.file_id")
        media_type, data = _data_url(where, part.file.file_data)
        if media_type.startswith("text/"):
            try:
                text = binascii.a2b_base64(data).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise bad_request(f"{where}.file.file_data: not base64 text", f"{where}.file.file_data") from None
            return a.DocumentBlock(a.TextSource(text), title=part.file.filename, cache_control=part.cache_control)
        return a.DocumentBlock(a.Base64Source(media_type, data), title=part.file.filename,
                               cache_control=part.cache_control)
    if isinstance(part, o.InputAudioPart):
        raise bad_request(f"{where}: Anthropic's API takes no audio", f"{where}.type")
    raise bad_request(f"{where}: a refusal part belongs in an assistant message", f"{where}.type")


def _data_url(where: str, url: str) -> tuple[str, str]:
    head, comma, data = url.partition(",")
    if not url.startswith("data:") or not comma or not head.endswith(";base64"):
        raise bad_request(f"{where}: a data: URL must be base64 (data:<media type>;base64,<data>)", where)
    return head[5:-7], data


def _assistant_blocks(where: str, message: o.AssistantMessage) -> list[a.Block]:
    """The assistant turn: LiteLLM's thinking_blocks first (signed, so that Claude takes them back),
    then its text, then its tool calls. `reasoning_content` alone has no signature and is not sent."""
    blocks: list[a.Block] = []
    for at, thinking in enumerate(message.thinking_blocks or ()):
        if thinking.type == "thinking" and thinking.signature:
            blocks.append(a.ThinkingBlock(thinking.thinking or "", thinking.signature))
        elif thinking.type == "redacted_thinking" and thinking.data:
            blocks.append(a.RedactedThinkingBlock(thinking.data))
        else:
            raise bad_request(f"{where}.thinking_blocks[{at}]: a thinking block needs its signature (a redacted "
                              "one its data)", f"{where}.thinking_blocks[{at}]")
    if message.function_call is not None:
        raise bad_request(f"{where}.function_call: use tool_calls, of which function_call is the deprecated form",
                          f"{where}.function_call")
    content = message.content
    if isinstance(content, str):
        if content:
            blocks.append(a.TextBlock(content))
    elif content is not None:
        for at, part in enumerate(content):
            if isinstance(part, o.TextPart) and part.text:
                blocks.append(a.TextBlock(part.text, part.cache_control))
            elif isinstance(part, o.RefusalPart) and part.refusal:
                blocks.append(a.TextBlock(part.refusal))
            elif not isinstance(part, o.TextPart | o.RefusalPart):
                raise bad_request(f"{where}.content[{at}]: an assistant message holds text only",
                                  f"{where}.content[{at}]")
    if message.refusal and not content:
        blocks.append(a.TextBlock(message.refusal))
    for at, call in enumerate(message.tool_calls or ()):
        try:
            arguments = orjson.loads(call.function.arguments) if call.function.arguments.strip() else {}
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise bad_request(f"{where}.tool_calls[{at}].function.arguments: not a JSON object",
                              f"{where}.tool_calls[{at}].function.arguments")
        blocks.append(a.ToolUseBlock(call.id, call.function.name, arguments))
    return blocks


def _tool_result(where: str, message: o.ToolMessage) -> a.ToolResultBlock:
    if isinstance(message.content, str):
        content: str | list[a.TextBlock | a.ImageBlock | a.DocumentBlock] = message.content
    else:
        content = [_user_block(f"{where}.content[{at}]", part) for at, part in enumerate(message.content)]
    return a.ToolResultBlock(message.tool_call_id, content, cache_control=message.cache_control)


def _tool(index: int, tool: o.ChatTool) -> a.Tool:
    if tool.type != "function":
        raise bad_request(f"tools[{index}]: only function tools can be sent to Anthropic's API", f"tools[{index}].type")
    function = tool.function
    schema = function.parameters if function.parameters is not None else {"type": "object", "properties": {}}
    return a.Tool(function.name, schema, function.description, cache_control=tool.cache_control,
                  strict=function.strict)


def _tool_choice(request: o.ChatRequest) -> a.ToolChoice | None:
    choice = request.tool_choice
    no_parallel = True if request.parallel_tool_calls is False else None
    if choice == "none":
        return a.ToolChoiceNone()
    if choice == "required":
        return a.ToolChoiceAny(no_parallel)
    if isinstance(choice, o.NamedToolChoice):
        return a.ToolChoiceTool(choice.function.name, no_parallel)
    if choice == "auto" or (no_parallel and request.tools):
        return a.ToolChoiceAuto(no_parallel)
    return None


def _thinking(messages: a.MessagesRequest, request: o.ChatRequest, max_tokens_defaulted: bool) -> None:
    """`thinking` as given (LiteLLM's pass-through), else a budget for reasoning_effort. Anthropic wants
    max_tokens above the budget: a defaulted max_tokens grows to make room; a client's own is kept and
    the budget shrinks to fit it, down to Anthropic's minimum."""
    given = request.thinking
    effort = request.reasoning_effort
    if given is not None:
        if given.type == "enabled":
            if given.budget_tokens is None:
                raise bad_request("thinking.budget_tokens is required when thinking is enabled",
                                  "thinking.budget_tokens")
            budget: int | None = given.budget_tokens
        else:
            messages.thinking = a.ThinkingDisabled() if given.type == "disabled" else a.ThinkingAdaptive()
            return
    elif effort is None:
        return
    elif effort == "none":
        messages.thinking = a.ThinkingDisabled()
        return
    else:
        budget = BUDGETS.get(effort)
        if budget is None:
            raise bad_request(f"reasoning_effort {effort!r} is not one of {', '.join(['none', *BUDGETS])}",
                              "reasoning_effort")
    assert budget is not None
    if messages.max_tokens <= budget:
        if max_tokens_defaulted:
            messages.max_tokens = budget + messages.max_tokens
        elif messages.max_tokens > MIN_BUDGET:
            budget = messages.max_tokens - 1
        else:
            raise bad_request(f"max_tokens {messages.max_tokens} leaves no room for thinking: Anthropic's API "
                              f"needs max_tokens above the thinking budget, which is at least {MIN_BUDGET}",
                              "max_tokens")
    messages.thinking = a.ThinkingEnabled(budget)
