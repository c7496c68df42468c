"""A Messages API request (a client's own, or a chat completions request translated to one) as Converse.

The Messages API and Converse describe a conversation alike: system blocks, user and assistant turns of
content blocks, tool calls and their results, thinking with its signature. So a chat completions request
takes the existing, tested way to the Messages API (gateway/translate/to_messages_request.py) and then
this one step, and a Messages request only this step. `cache_control` becomes a `cachePoint` after its
block; `top_k` and `thinking` go in `additionalModelRequestFields`, where Claude on Converse reads them.
What Converse cannot say is a 400 naming the field.
"""

from __future__ import annotations

import base64
from typing import Any

from gateway.bedrock import converse_wire as c
from gateway.errors import bad_request
from gateway.translate import anthropic_wire as a

IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
DOCUMENT_FORMATS = {"application/pdf": "pdf", "text/plain": "txt", "text/csv": "csv", "text/html": "html",
                    "text/markdown": "md"}
CACHE_POINT = c.Content(cachePoint=c.CachePoint())


def messages_to_converse(request: a.MessagesRequest, model: str) -> c.ConverseRequest:
    for name, given in (("output_config", request.output_config), ("container", request.container),
                        ("mcp_servers", request.mcp_servers), ("context_management", request.context_management)):
        if given is not None:
            raise bad_request(f"{name} cannot be sent to model {model!r}, which is served by Bedrock's Converse "
                              "API", name)
    system = _system(request.system)
    messages: list[c.Message] = []
    for index, turn in enumerate(request.messages):
        where = f"messages[{index}]"
        if turn.role == "system":  # Converse has no system turn mid-conversation: it joins the system prompt
            system.extend(c.SystemContent(text=b.text) for b in _texts(where, turn.content))
            continue
        content = _content(where, turn.content)
        if messages and messages[-1].role == turn.role:
            messages[-1].content.extend(content)
        else:
            messages.append(c.Message(turn.role, content))
    converse = c.ConverseRequest(messages)
    if system:
        converse.system = system
    converse.inferenceConfig = c.InferenceConfig(request.max_tokens, request.temperature, request.top_p,
                                                 request.stop_sequences)
    for index, tool in enumerate(request.tools or []):
        if tool.type not in (None, "custom"):
            raise bad_request(f"tools[{index}]: {tool.type!r} is a server tool of Anthropic's API, which Bedrock's "
                              "Converse API does not run", f"tools[{index}].type")
    tools = [_tool(tool) for tool in request.tools or []]
    if tools and not isinstance(request.tool_choice, a.ToolChoiceNone):
        converse.toolConfig = c.ToolConfig(tools, _tool_choice(request.tool_choice))
    extra: dict[str, Any] = {}
    if request.top_k is not None:
        extra["top_k"] = request.top_k
    thinking = request.thinking
    if isinstance(thinking, a.ThinkingEnabled):
        extra["thinking"] = {"type": "enabled", "budget_tokens": thinking.budget_tokens}
    elif isinstance(thinking, a.ThinkingAdaptive):
        extra["thinking"] = {"type": "adaptive"}
    if extra:
        converse.additionalModelRequestFields = extra
    return converse


def _system(given: str | list[a.TextBlock] | None) -> list[c.SystemContent]:
    if given is None:
        return []
    if isinstance(given, str):
        return [c.SystemContent(text=given)] if given else []
    found: list[c.SystemContent] = []
    for block in given:
        found.append(c.SystemContent(text=block.text))
        if block.cache_control is not None:
            found.append(c.SystemContent(cachePoint=c.CachePoint()))
    return found


def _texts(where: str, content: str | list[a.Block]) -> list[a.TextBlock]:
    if isinstance(content, str):
        return [a.TextBlock(content)]
    if not all(isinstance(b, a.TextBlock) for b in content):
        raise bad_request(f"{where}: a system turn holds text only", f"{where}.content")
    return [b for b in content if isinstance(b, a.TextBlock)]


def _content(where: str, content: str | list[a.Block]) -> list[c.Content]:
    if isinstance(content, str):
        return [c.Content(text=content)]
    found: list[c.Content] = []
    for index, block in enumerate(content):
        found.append(_block(f"{where}.content[{index}]", block))
        if getattr(block, "cache_control", None) is not None:
            found.append(CACHE_POINT)
    return found


def _block(where: str, block: a.Block) -> c.Content:
    if isinstance(block, a.TextBlock):
        return c.Content(text=block.text)
    if isinstance(block, a.ImageBlock):
        return c.Content(image=_image(where, block))
    if isinstance(block, a.DocumentBlock):
        return c.Content(document=_document(where, block))
    if isinstance(block, a.ToolUseBlock):
        return c.Content(toolUse=c.ToolUse(block.id, block.name, block.input))
    if isinstance(block, a.ToolResultBlock):
        return c.Content(toolResult=_tool_result(where, block))
    if isinstance(block, a.ThinkingBlock):
        return c.Content(reasoningContent=c.Reasoning(c.ReasoningText(block.thinking, block.signature or None)))
    return c.Content(reasoningContent=c.Reasoning(redactedContent=block.data))


def _image(where: str, block: a.ImageBlock) -> c.Image:
    source = block.source
    if not isinstance(source, a.Base64Source):
        raise bad_request(f"{where}: Bedrock's Converse API takes images as data (base64), not by URL or file id",
                          f"{where}.source")
    found = IMAGE_FORMATS.get(source.media_type)
    if found is None:
        raise bad_request(f"{where}: image type {source.media_type!r} is not one of {', '.join(IMAGE_FORMATS)}",
                          f"{where}.source.media_type")
    return c.Image(found, c.Source(source.data))


def _document(where: str, block: a.DocumentBlock) -> c.Document:
    source = block.source
    name = block.title or where.replace(".", "-").replace("[", "-").replace("]", "")
    if isinstance(source, a.TextSource):
        return c.Document("txt", name, c.Source(base64.b64encode(source.data.encode()).decode()))
    if isinstance(source, a.Base64Source) and source.media_type in DOCUMENT_FORMATS:
        return c.Document(DOCUMENT_FORMATS[source.media_type], name, c.Source(source.data))
    raise bad_request(f"{where}: Bedrock's Converse API takes documents as text or base64 data of "
                      f"{', '.join(DOCUMENT_FORMATS)}", f"{where}.source")


def _tool_result(where: str, block: a.ToolResultBlock) -> c.ToolResult:
    parts: list[c.ToolResultContent] = []
    if isinstance(block.content, str):
        parts.append(c.ToolResultContent(text=block.content))
    else:
        for index, part in enumerate(block.content):
            inner = f"{where}.content[{index}]"
            if isinstance(part, a.TextBlock):
                parts.append(c.ToolResultContent(text=part.text))
            elif isinstance(part, a.ImageBlock):
                parts.append(c.ToolResultContent(image=_image(inner, part)))
            else:
                parts.append(c.ToolResultContent(document=_document(inner, part)))
    return c.ToolResult(block.tool_use_id, parts or [c.ToolResultContent(text="")],
                        "error" if block.is_error else None)


def _tool(tool: a.Tool) -> c.Tool:
    schema = tool.input_schema if tool.input_schema is not None else {"type": "object", "properties": {}}
    return c.Tool(toolSpec=c.ToolSpec(tool.name, c.InputSchema(schema), tool.description or None))


def _tool_choice(choice: a.ToolChoice | None) -> c.ToolChoice | None:
    if isinstance(choice, a.ToolChoiceAny):
        return c.ToolChoice(any=c.Empty())
    if isinstance(choice, a.ToolChoiceTool):
        return c.ToolChoice(tool=c.SpecificTool(choice.name))
    if isinstance(choice, a.ToolChoiceAuto):
        return c.ToolChoice(auto=c.Empty())
    return None
