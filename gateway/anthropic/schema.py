"""Anthropic's Messages request bodies, as /openapi.json shows them.

The proxy never decodes a body into these: it checks what it needs (gateway/anthropic/requests.py) and
relays the rest, so every field and content block Anthropic defines passes (hence no forbid_unknown_fields)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType


class Message(msgspec.Struct, kw_only=True):
    # "system": a mid-conversation system message (beta mid-conversation-system-2026-04-07), never the first.
    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]  # text, or content blocks: text, image, tool_use, tool_result, thinking...


class MessagesRequest(msgspec.Struct, kw_only=True):
    model: str
    max_tokens: int
    messages: list[Message]
    system: str | list[dict[str, Any]] | UnsetType = UNSET
    stream: bool | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    top_k: int | UnsetType = UNSET
    stop_sequences: list[str] | UnsetType = UNSET
    tools: list[dict[str, Any]] | UnsetType = UNSET
    tool_choice: dict[str, Any] | UnsetType = UNSET
    thinking: dict[str, Any] | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET
    service_tier: str | UnsetType = UNSET
    output_config: dict[str, Any] | UnsetType = UNSET
    context_management: dict[str, Any] | UnsetType = UNSET


class CountTokensRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: list[Message]
    system: str | list[dict[str, Any]] | UnsetType = UNSET
    tools: list[dict[str, Any]] | UnsetType = UNSET
    tool_choice: dict[str, Any] | UnsetType = UNSET
    thinking: dict[str, Any] | UnsetType = UNSET


MESSAGES_REQUESTS: dict[str, type] = {"messages": MessagesRequest, "messages/count_tokens": CountTokensRequest}
