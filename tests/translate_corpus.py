"""Byte-exact upstream streams and answers for the translation tests (gateway/translate/), each with
the source its shape was read from: OpenAI-style chat streams with tool calls, reasoning, refusals,
stop strings and errors (direction 1's input), and Anthropic Messages streams (direction 2's input).
The plain-text OpenAI-style streams of tests/stream_corpus.py are used too. Ids and texts are
changed from the sources; field names, order, spacing and framing are kept."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stream:
    name: str
    source: str
    frames: tuple[bytes, ...]  # the upstream's writes


def _lines(*events: str) -> tuple[bytes, ...]:
    return tuple(f"data: {event}\n\n".encode() for event in events)


def _named(*events: tuple[str, str]) -> tuple[bytes, ...]:
    return tuple(f"event: {name}\ndata: {data}\n\n".encode() for name, data in events)


# ---- OpenAI-style chat streams -------------------------------------------------------------------

_OA = '"id":"chatcmpl-BfT6wQ2xkR0xYv1tGmKp9sLcUe4Za","object":"chat.completion.chunk","created":1731001234,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb"'

OPENAI_TOOL_CALL = Stream(
    "openai_tool_call",
    "openai/openai-python .inline-snapshot/external/a247c49c...bin (a recorded gpt-4o tool-call stream)",
    _lines(
        '{' + _OA + ',"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_Hq3Lm8TnVwZk2Rb7XyPd5Jc1","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}',
        '{' + _OA + ',"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\""}}]},"logprobs":null,"finish_reason":null}]}',
        '{' + _OA + ',"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"city"}}]},"logprobs":null,"finish_reason":null}]}',
        '{' + _OA + ',"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\":\\""}}]},"logprobs":null,"finish_reason":null}]}',
        '{' + _OA + ',"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"Lyon"}}]},"logprobs":null,"finish_reason":null}]}',
        '{' + _OA + ',"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\"}"}}]},"logprobs":null,"finish_reason":null}]}',
        '{' + _OA + ',"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}',
        '{' + _OA + ',"choices":[],"usage":{"prompt_tokens":48,"completion_tokens":19,"total_tokens":67,"prompt_tokens_details":{"cached_tokens":32,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}',
        "[DONE]",
    ),
)

OPENAI_REFUSAL = Stream(
    "openai_refusal",
    "openai/openai-python .inline-snapshot/external/173417d5...bin (a recorded refusal stream)",
    _lines(
        '{' + _OA + ',"choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":""},"logprobs":null,"finish_reason":null}]}',
        '{' + _OA + ',"choices":[{"index":0,"delta":{"refusal":"I cannot"},"logprobs":null,"finish_reason":null}]}',
        '{' + _OA + ',"choices":[{"index":0,"delta":{"refusal":" help with that."},"logprobs":null,"finish_reason":null}]}',
        '{' + _OA + ',"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}',
        '{' + _OA + ',"choices":[],"usage":{"prompt_tokens":79,"completion_tokens":11,"total_tokens":90,"completion_tokens_details":{"reasoning_tokens":0}}}',
        "[DONE]",
    ),
)

# vLLM writes DeltaMessage with exclude_unset: only the fields a delta sets; tool calls as its tool
# parsers (hermes) emit them: id, type, index and name first, then argument pieces.
_VL = '"id":"chatcmpl-3c5e1f0a9d7b4e2c8f6a1b0c9d8e7f6a","object":"chat.completion.chunk","created":1731002000,"model":"Qwen/Qwen3-8B"'

VLLM_REASONING_TOOLS = Stream(
    "vllm_reasoning_tools",
    "vllm-project/vllm vllm/entrypoints/openai/protocol.py (DeltaMessage.reasoning_content, DeltaToolCall) + serving_chat.py",
    _lines(
        '{' + _VL + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"reasoning_content":"The user wants"},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"reasoning_content":" two cities."},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"content":"Checking both."},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"tool_calls":[{"id":"chatcmpl-tool-5b1e9c3f2a","type":"function","index":0,"function":{"name":"get_weather"}}]},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\": \\""}}]},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"Oslo\\"}"}}]},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"tool_calls":[{"id":"chatcmpl-tool-7d2f0a4e6b","type":"function","index":1,"function":{"name":"get_weather"}}]},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\\"city\\": \\"Bergen\\"}"}}]},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"tool_calls","stop_reason":null}]}',
        '{' + _VL + ',"choices":[],"usage":{"prompt_tokens":212,"total_tokens":281,"completion_tokens":69,"prompt_tokens_details":{"cached_tokens":128}}}',
        "[DONE]",
    ),
)

VLLM_REASONING_FIELD = Stream(
    "vllm_reasoning_field",
    "vllm-project/vllm vllm/entrypoints/openai/engine/protocol.py (DeltaMessage.reasoning, the name since 0.10)",
    _lines(
        '{' + _VL + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"reasoning":"Short question."},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"content":"Yes."},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"length","stop_reason":null}]}',
        '{' + _VL + ',"choices":[],"usage":{"prompt_tokens":17,"total_tokens":33,"completion_tokens":16}}',
        "[DONE]",
    ),
)

VLLM_STOP_STRING = Stream(
    "vllm_stop_string",
    "vllm-project/vllm vllm/entrypoints/openai/protocol.py (ChatCompletionResponseStreamChoice.stop_reason: the stop string matched)",
    _lines(
        '{' + _VL + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"content":"one, two"},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":"three"}]}',
        '{' + _VL + ',"choices":[],"usage":{"prompt_tokens":12,"total_tokens":16,"completion_tokens":4}}',
        "[DONE]",
    ),
)

VLLM_ERROR = Stream(
    "vllm_error",
    "vllm-project/vllm vllm/entrypoints/openai/serving_engine.py (create_streaming_error_response: an ErrorResponse as a data event, then [DONE])",
    _lines(
        '{' + _VL + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}',
        '{' + _VL + ',"choices":[{"index":0,"delta":{"content":"Partial"},"logprobs":null,"finish_reason":null}]}',
        '{"error":{"object":"error","message":"The engine died while generating.","type":"InternalServerError","param":null,"code":500}}',
        "[DONE]",
    ),
)

# Ollama writes a whole tool call in one chunk (openai/openai.go toChunk), and its finish chunk after.
_OL = '"id":"chatcmpl-412","object":"chat.completion.chunk","created":1731003000,"model":"qwen3:8b","system_fingerprint":"fp_ollama"'

OLLAMA_TOOL = Stream(
    "ollama_tool",
    "ollama/ollama openai/openai.go (ChatCompletionChunk, ToolCall with index, toChunk, finish_reason tool_calls)",
    _lines(
        '{' + _OL + ',"choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_k2m9x4qz","index":0,"type":"function","function":{"name":"lookup","arguments":"{\\"term\\":\\"sse\\"}"}}]},"finish_reason":null}]}',
        '{' + _OL + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"tool_calls"}]}',
        '{' + _OL + ',"choices":[],"usage":{"prompt_tokens":61,"completion_tokens":22,"total_tokens":83}}',
        "[DONE]",
    ),
)

CHAT_STREAMS = (OPENAI_TOOL_CALL, OPENAI_REFUSAL, VLLM_REASONING_TOOLS, VLLM_REASONING_FIELD, VLLM_STOP_STRING,
                VLLM_ERROR, OLLAMA_TOOL)

# A non-streaming vLLM answer with reasoning and a tool call (ChatCompletionResponse, ChatMessage).
VLLM_ANSWER = (
    b'{"id":"chatcmpl-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d","object":"chat.completion","created":1731004000,'
    b'"model":"Qwen/Qwen3-8B","choices":[{"index":0,"message":{"role":"assistant","reasoning_content":"Need the '
    b'weather.","content":"Let me check.","tool_calls":[{"id":"chatcmpl-tool-1f2e3d4c5b","type":"function",'
    b'"function":{"name":"get_weather","arguments":"{\\"city\\": \\"Oslo\\"}"}}]},"logprobs":null,'
    b'"finish_reason":"tool_calls","stop_reason":null}],"usage":{"prompt_tokens":150,"total_tokens":190,'
    b'"completion_tokens":40,"prompt_tokens_details":{"cached_tokens":96}},"prompt_logprobs":null}'
)

# ---- Anthropic Messages streams ------------------------------------------------------------------

ANTHROPIC_TEXT = Stream(
    "anthropic_text",
    "Anthropic API reference, Streaming Messages: 'Basic streaming request' (spaced JSON, a ping after the first block's start)",
    _named(
        ("message_start", '{"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}'),
        ("content_block_start", '{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}'),
        ("ping", '{"type": "ping"}'),
        ("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}'),
        ("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}'),
        ("content_block_stop", '{"type": "content_block_stop", "index": 0}'),
        ("message_delta", '{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}'),
        ("message_stop", '{"type": "message_stop"}'),
    ),
)

ANTHROPIC_TOOL = Stream(
    "anthropic_tool",
    "Anthropic API reference, Streaming Messages: 'Streaming request with tool use' (compact JSON, field order as sent)",
    _named(
        ("message_start", '{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}'),
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
        ("ping", '{"type": "ping"}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", checking."}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        ("content_block_start", '{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"San Francisco, CA\\""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", \\"unit\\": \\"fahrenheit\\"}"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":1}'),
        ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}'),
        ("message_stop", '{"type":"message_stop"}'),
    ),
)

ANTHROPIC_THINKING = Stream(
    "anthropic_thinking",
    "Anthropic API reference, Streaming Messages: 'Streaming request with extended thinking' (its usage, which the example leaves out and the SDK requires, as the other examples write it)",
    _named(
        ("message_start", '{"type": "message_start", "message": {"id": "msg_01Q8vCk2Ltn9", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 46, "output_tokens": 4}}}'),
        ("content_block_start", '{"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}'),
        ("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "27 * 453:\\n\\n1. 27 * 400 = 10,800"}}'),
        ("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\\n2. 27 * 53 = 1,431"}}'),
        ("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}}'),
        ("content_block_stop", '{"type": "content_block_stop", "index": 0}'),
        ("content_block_start", '{"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}'),
        ("content_block_delta", '{"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "27 * 453 = 12,231"}}'),
        ("content_block_stop", '{"type": "content_block_stop", "index": 1}'),
        ("message_delta", '{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 124}}'),
        ("message_stop", '{"type": "message_stop"}'),
    ),
)

ANTHROPIC_CACHED = Stream(
    "anthropic_cached",
    "vercel/ai packages/anthropic/src/__fixtures__/anthropic-json-tool.1.chunks.txt (recorded: cache counts in message_start, cumulative counts in message_delta)",
    _named(
        ("message_start", '{"type":"message_start","message":{"model":"claude-haiku-4-5-20251001","id":"msg_01K2JbSUMYhez5RHoK9ZCj9U","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":49,"cache_creation_input_tokens":300,"cache_read_input_tokens":1200,"cache_creation":{"ephemeral_5m_input_tokens":300,"ephemeral_1h_input_tokens":0},"output_tokens":10,"service_tier":"standard"}}}'),
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"From the cache."}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":49,"cache_creation_input_tokens":300,"cache_read_input_tokens":1200,"output_tokens":7}}'),
        ("message_stop", '{"type":"message_stop"}'),
    ),
)

ANTHROPIC_ERROR = Stream(
    "anthropic_error",
    "Anthropic API reference, Streaming Messages: 'Error events' (overloaded_error in the stream)",
    _named(
        ("message_start", '{"type":"message_start","message":{"id":"msg_01Xo9","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}'),
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Start"}}'),
        ("error", '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'),
    ),
)

ANTHROPIC_STREAMS = (ANTHROPIC_TEXT, ANTHROPIC_TOOL, ANTHROPIC_THINKING, ANTHROPIC_CACHED, ANTHROPIC_ERROR)

# A non-streaming answer with thinking, text and a tool call (Messages API reference, extended thinking + tool use).
ANTHROPIC_ANSWER = (
    b'{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",'
    b'"content":[{"type":"thinking","thinking":"The user wants the weather.","signature":"WaUjzkypQ2mUEVM36O2T"},'
    b'{"type":"text","text":"I will look it up."},{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9",'
    b'"name":"get_weather","input":{"location":"San Francisco, CA"}}],"stop_reason":"tool_use",'
    b'"stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":0,'
    b'"cache_read_input_tokens":1800,"output_tokens":503}}'
)
