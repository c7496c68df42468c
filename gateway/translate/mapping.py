"""What one API's stop reasons, usage and ids are in the other's words: shared by answers and streams."""

from __future__ import annotations

import secrets

import msgspec

from gateway.translate import anthropic_wire as a
from gateway.translate import openai_wire as o
from gateway.usage import Usage, from_object

FINISH_TO_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                  "content_filter": "refusal"}
STOP_TO_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}


def stop_reason(finish_reason: str | None, matched: int | str | None, used_tools: bool,
                refused: bool) -> tuple[str, str | None]:
    """Anthropic's (stop_reason, stop_sequence) for an OpenAI-style finish. `matched` is vLLM's
    `stop_reason`: the stop string that ended the answer (or a stop token's id). Some servers
    (Ollama among them) finish a tool call with "stop": the tools called decide it."""
    if refused:
        return "refusal", None
    if finish_reason == "stop" or finish_reason is None:
        if used_tools:
            return "tool_use", None
        if isinstance(matched, str):
            return "stop_sequence", matched
        return "end_turn", None
    return FINISH_TO_STOP.get(finish_reason, "end_turn"), None


def finish_reason(stop: str | None) -> str:
    return STOP_TO_FINISH.get(stop or "end_turn", "stop")


def anthropic_usage(usage: o.ChatUsageIn | None) -> a.Usage:
    """OpenAI counts cached prompt tokens inside prompt_tokens; Anthropic's input_tokens leaves them out."""
    if usage is None:
        return a.Usage(0, 0)
    counted = usage_of_chat(usage)
    uncached = counted.prompt_tokens - counted.cache_read_tokens - counted.cache_creation_tokens
    return a.Usage(max(uncached, 0), counted.completion_tokens, counted.cache_creation_tokens,
                   counted.cache_read_tokens)


def usage_of_chat(usage: o.ChatUsageIn) -> Usage:
    """The settlement's Usage from an OpenAI-style upstream's report, read as the relay reads any other."""
    return from_object(msgspec.to_builtins(usage)) or Usage(usage.prompt_tokens, usage.completion_tokens)


class AnthropicCount:
    """An Anthropic upstream's usage as it arrives: message_start's, then message_delta's cumulative counts."""

    __slots__ = ("input", "output", "cache_read", "cache_creation", "cache_creation_1h", "thinking", "seen")

    def __init__(self) -> None:
        self.input = self.output = self.cache_read = self.cache_creation = self.cache_creation_1h = self.thinking = 0
        self.seen = False

    def update(self, usage: a.UsageIn | None) -> None:
        if usage is None:
            return
        self.seen = True
        if usage.input_tokens is not None:
            self.input = usage.input_tokens
        if usage.output_tokens is not None:
            self.output = usage.output_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_creation = usage.cache_creation_input_tokens
        if usage.cache_creation is not None and usage.cache_creation.ephemeral_1h_input_tokens is not None:
            self.cache_creation_1h = usage.cache_creation.ephemeral_1h_input_tokens
        details = usage.output_tokens_details
        if details is not None and details.thinking_tokens is not None:
            self.thinking = details.thinking_tokens

    def chat_usage(self) -> o.ChatUsage:
        prompt = self.input + self.cache_read + self.cache_creation
        by_ttl = o.CacheCreationDetails(self.cache_creation - self.cache_creation_1h, self.cache_creation_1h) \
            if self.cache_creation_1h else None
        return o.ChatUsage(prompt, self.output, prompt + self.output,
                           o.PromptDetails(self.cache_read, cache_creation_token_details=by_ttl),
                           o.CompletionDetails(self.thinking) if self.thinking else None,
                           cache_creation_input_tokens=self.cache_creation,
                           cache_read_input_tokens=self.cache_read)

    def usage(self) -> Usage | None:
        if not self.seen:
            return None
        prompt = self.input + self.cache_read + self.cache_creation
        return Usage(prompt, self.output, prompt + self.output, cache_read_tokens=self.cache_read,
                     cache_creation_tokens=self.cache_creation, reasoning_tokens=self.thinking,
                     cache_creation_1h_tokens=min(self.cache_creation_1h, self.cache_creation))


def message_id(upstream_id: str) -> str:
    """Anthropic's `msg_` id for an OpenAI-style answer, keeping the upstream's id to be traced."""
    if upstream_id.startswith("chatcmpl-"):
        upstream_id = upstream_id[9:]
    return "msg_" + (upstream_id or secrets.token_hex(12))


def completion_id(upstream_id: str) -> str:
    return "chatcmpl-" + (upstream_id or secrets.token_hex(12))


def tool_use_id() -> str:
    return "toolu_" + secrets.token_hex(12)
