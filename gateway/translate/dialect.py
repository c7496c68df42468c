"""How an OpenAI-compatible upstream takes what its API has no common word for: the answer's token limit,
extended thinking, and the reasoning of earlier turns.

- OpenAI: `max_completion_tokens` (its reasoning models refuse `max_tokens`), `reasoning_effort`.
- vLLM: the chat template's `enable_thinking` (Qwen3, GLM) and `thinking` (DeepSeek V3.1) in
  `chat_template_kwargs`, plus `reasoning_effort` (gpt-oss); earlier reasoning goes back as the
  assistant message's `reasoning_content`, which chat templates read.
- Ollama: `reasoning_effort`, and `"none"` turns thinking off.
- z.ai: `thinking: {"type": "enabled" | "disabled"}`, and earlier reasoning goes back as
  `reasoning_content` (its interleaved thinking wants it with tool results).
- Any other OpenAI-compatible server: `max_tokens` and `reasoning_effort`.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Dialect(msgspec.Struct, frozen=True):
    name: str
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"]
    thinking: Literal["reasoning_effort", "chat_template", "ollama", "zai"]
    reasoning_in_history: bool
    # vLLM continues a trailing assistant message when asked to (Anthropic's prefill).
    continues_prefill: bool = False


OPENAI = Dialect("openai", "max_completion_tokens", "reasoning_effort", False)
VLLM = Dialect("vllm", "max_tokens", "chat_template", True, continues_prefill=True)
OLLAMA = Dialect("ollama", "max_tokens", "ollama", False)
ZAI = Dialect("zai", "max_tokens", "zai", True)
GENERIC = Dialect("generic", "max_tokens", "reasoning_effort", False)

BY_PROVIDER = {"openai": OPENAI, "hosted_vllm": VLLM, "ollama": OLLAMA, "ollama_chat": OLLAMA, "zai": ZAI}


def dialect_for(provider: str) -> Dialect:
    """The dialect of a provider prefix of gateway/providers.py."""
    return BY_PROVIDER.get(provider, GENERIC)
