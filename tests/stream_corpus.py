"""Byte-exact corpus of OpenAI-style SSE streaming answers, for testing how the gateway strips the usage it asked for on a client's behalf: each shape holds what an upstream writes when asked for `stream_options.include_usage` (split into writes, some of them cut mid-event the way TCP reads can cut) and, written out by hand, what a client that did not ask for usage must receive; each shape's framing, line endings, JSON spacing, key order and usage placement are taken from the source named in its `source` field."""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class StreamShape:
    name: str
    source: str  # "owner/repo path/to/file" the framing was read from (or the spec's name)
    endpoint: str  # "chat/completions" or "completions"
    frames: tuple[bytes, ...]  # what the upstream writes when asked for usage (stream_options.include_usage: true), each item one write
    client_frames: tuple[bytes, ...]  # what a client that did NOT ask for usage must receive when the gateway asked on its behalf
    usage: tuple[int, int, int]  # prompt_tokens, completion_tokens, total_tokens the upstream reports in `frames`


# api.openai.com: compact JSON, "usage":null on every chunk, a usage-only chunk with
# "choices":[] before [DONE]; the usage chunk is cut mid-key across two writes.
OPENAI = StreamShape(
    name="openai",
    source="openai/openai-python .inline-snapshot/external/*.bin (recorded live streams) + the API reference's stream_options.include_usage text",
    endpoint="chat/completions",
    frames=(
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":"The"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" sky"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" is"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" blue."},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[],"usa',
        b'ge":{"prompt_tokens":14,"completion_tokens":5,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n',
        b"data: [DONE]\n\n",
    ),
    client_frames=(
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":"The"},"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" sky"},"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" is"},"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" blue."},"logprobs":null,"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-AQv3kXbGzR8mT1yPq0LdN5sWfHc2E","object":"chat.completion.chunk","created":1730891234,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ),
    usage=(14, 5, 19),
)

# vLLM: pydantic model_dump_json(exclude_unset=True), so no "usage":null, but the
# explicitly passed None fields (prompt_token_ids, token_ids, stop_reason) do appear;
# the usage chunk (exclude_none=True) keeps UsageInfo's field order
# prompt/total/completion. One content event is cut mid-JSON.
VLLM = StreamShape(
    name="vllm",
    source="vllm-project/vllm vllm/entrypoints/openai/serving_chat.py (chat_completion_stream_generator) + vllm/entrypoints/openai/protocol.py",
    endpoint="chat/completions",
    frames=(
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"Paris"},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" i',
        b's"},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" capital."},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[],"usage":{"prompt_tokens":21,"total_tokens":27,"completion_tokens":6}}\n\n',
        b"data: [DONE]\n\n",
    ),
    client_frames=(
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"Paris"},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" is"},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" capital."},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n',
        b'data: {"id":"chatcmpl-6f1d0c2a9b8e4f37a5c1d2e3f4a5b6c7","object":"chat.completion.chunk","created":1731000456,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}\n\n',
        b"data: [DONE]\n\n",
    ),
    usage=(21, 6, 27),
)

# vLLM /v1/completions: model_dump_json(exclude_unset=False), so every chunk carries
# every field, "usage":null included; the usage chunk uses exclude_none=True.
VLLM_COMPLETIONS = StreamShape(
    name="vllm_completions",
    source="vllm-project/vllm vllm/entrypoints/openai/serving_completion.py (completion_stream_generator) + vllm/entrypoints/openai/protocol.py",
    endpoint="completions",
    frames=(
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[{"index":0,"text":" Paris","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n',
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[{"index":0,"text":".","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n',
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[{"index":0,"text":" It","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n',
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[{"index":0,"text":" is","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n',
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[{"index":0,"text":" also","logprobs":null,"finish_reason":"length","stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n',
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[],"usage":{"prompt_tokens":6,"total_tokens":11,"completion_tokens":5}}\n\n',
        b"data: [DONE]\n\n",
    ),
    client_frames=(
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[{"index":0,"text":" Paris","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}\n\n',
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[{"index":0,"text":".","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}\n\n',
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[{"index":0,"text":" It","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}\n\n',
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[{"index":0,"text":" is","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}\n\n',
        b'data: {"id":"cmpl-3b9e2f7c1a4d4e8f9a0b1c2d3e4f5a6b","object":"text_completion","created":1731000789,"model":"meta-llama/Llama-3.1-8B","choices":[{"index":0,"text":" also","logprobs":null,"finish_reason":"length","stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}\n\n',
        b"data: [DONE]\n\n",
    ),
    usage=(6, 5, 11),
)

# llama.cpp server: nlohmann::ordered_json dumped compact with raw UTF-8, keys in
# insertion order (choices first); the first token's result is two events in one
# write (role chunk + content chunk), the final result is the finish chunk plus the
# usage chunk (which also carries "timings") in one write. One event is cut between
# the two bytes of "\xc3\xa0" (a with grave accent).
LLAMA_CPP_SERVER = StreamShape(
    name="llama_cpp_server",
    source="ggml-org/llama.cpp tools/server/server-task.cpp (to_json_oaicompat_chat_stream) + tools/server/server-common.cpp (format_oai_sse, safe_json_to_str)",
    endpoint="chat/completions",
    frames=(
        b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n'
        b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Bonjour"}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" \xc3',
        b'\xa0"}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" tous"}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" !"}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n'
        b'data: {"choices":[],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk","usage":{"completion_tokens":5,"prompt_tokens":12,"total_tokens":17},"timings":{"cache_n":0,"prompt_n":12,"prompt_ms":36.0,"prompt_per_token_ms":3.0,"prompt_per_second":333.3333333333333,"predicted_n":5,"predicted_ms":62.5,"predicted_per_token_ms":12.5,"predicted_per_second":80.0}}\n\n',
        b"data: [DONE]\n\n",
    ),
    client_frames=(
        b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Bonjour"}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" \xc3\xa0"}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" tous"}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" !"}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n',
        b'data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1731234567,"id":"chatcmpl-Q7vR2mXk9LpT4wZc1NbY8sHd","model":"qwen2.5-1.5b-instruct-q4_k_m.gguf","system_fingerprint":"b6450-2e6e5fa3","object":"chat.completion.chunk"}\n\n',
        b"data: [DONE]\n\n",
    ),
    usage=(12, 5, 17),
)

# Ollama: Go encoding/json (compact, struct field order), Usage is a pointer with
# omitempty so no "usage":null; role only on the first chunk, finish_reason on its
# own chunk with an empty delta, then the usage chunk with "choices":[].
OLLAMA = StreamShape(
    name="ollama",
    source="ollama/ollama openai/openai.go (ChatCompletionChunk, toChunk, FinishChunk) + middleware/openai.go (ChatWriter.writeResponse), v0.33",
    endpoint="chat/completions",
    frames=(
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":" How"},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":" can I help?"},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":26,"completion_tokens":9,"total_tokens":35}}\n\n',
        b"data: [DONE]\n\n",
    ),
    client_frames=(
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":" How"},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":" can I help?"},"finish_reason":null}]}\n\n',
        b'data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ),
    usage=(26, 9, 35),
)

# sse-starlette with its default separator: every line ends "\r\n", so events end
# "\r\n\r\n", and the 15 s ping comment ": ping - <datetime.now(timezone.utc)>" lands
# mid-stream. Chunks are llama-cpp-python's dicts through json.dumps (", " and ": ").
# Two events are cut between the "\r" and the "\n" of a CRLF.
SSE_STARLETTE = StreamShape(
    name="sse_starlette",
    source="sysid/sse-starlette sse_starlette/event.py (ServerSentEvent.encode, DEFAULT_SEPARATOR) + sse_starlette/sse.py (_ping) + abetlen/llama-cpp-python llama_cpp/server/app.py, llama_cpp/llama_chat_format.py",
    endpoint="chat/completions",
    frames=(
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": null, "finish_reason": null}]}\r\n\r\n',
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": " Sure"}, "logprobs": null, "finish_reason": null}]}\r\n\r\n',
        b": ping - 2024-11-12 08:26:55.123456+00:00\r\n\r\n",
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": ","}, "logprobs": null, "finish_reason": null}]}\r\n\r\n',
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": " here"}, "logprobs": null, "finish_reason": null}]}\r',
        b"\n\r\n",
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": " it is."}, "logprobs": null, "finish_reason": null}]}\r\n\r\n',
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]}\r\n\r\n',
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": 7, "total_tokens": 38}}\r\n\r',
        b"\n",
        b"data: [DONE]\r\n\r\n",
    ),
    client_frames=(
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": null, "finish_reason": null}]}\r\n\r\n',
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": " Sure"}, "logprobs": null, "finish_reason": null}]}\r\n\r\n',
        b": ping - 2024-11-12 08:26:55.123456+00:00\r\n\r\n",
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": ","}, "logprobs": null, "finish_reason": null}]}\r\n\r\n',
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": " here"}, "logprobs": null, "finish_reason": null}]}\r\n\r\n',
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": " it is."}, "logprobs": null, "finish_reason": null}]}\r\n\r\n',
        b'data: {"id": "chatcmpl-5f0c2e1a-8b3d-4c7e-9a61-2d4f8b7c3e90", "model": "/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf", "created": 1731400000, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]}\r\n\r\n',
        b"data: [DONE]\r\n\r\n",
    ),
    usage=(31, 7, 38),
)

# OpenRouter: ": OPENROUTER PROCESSING" keep-alive comments before and among the data
# events; the usage rides on a trailing chunk whose choices are NOT empty (an empty
# role delta with finish_reason null), so only its "usage" member is stripped.
OPENROUTER = StreamShape(
    name="openrouter",
    source="openrouter.ai/docs/api_reference/streaming (SSE comments) + speakeasy-api/gram pull/921 (captured OpenRouter usage chunk)",
    endpoint="chat/completions",
    frames=(
        b": OPENROUTER PROCESSING\n\n",
        b": OPENROUTER PROCESSING\n\n",
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"system_fingerprint":"fp_45cf54deae"}\n\n',
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":"!"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"system_fingerprint":"fp_45cf54deae"}\n\n',
        b": OPENROUTER PROCESSING\n\n",
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":" Need"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"system_fingerprint":"fp_45cf54deae"}\n\n',
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":" anything?"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"system_fingerprint":"fp_45cf54deae"}\n\n',
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}],"system_fingerprint":"fp_45cf54deae"}\n\n',
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"usage":{"prompt_tokens":40,"completion_tokens":6,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n',
        b"data: [DONE]\n\n",
    ),
    client_frames=(
        b": OPENROUTER PROCESSING\n\n",
        b": OPENROUTER PROCESSING\n\n",
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"system_fingerprint":"fp_45cf54deae"}\n\n',
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":"!"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"system_fingerprint":"fp_45cf54deae"}\n\n',
        b": OPENROUTER PROCESSING\n\n",
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":" Need"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"system_fingerprint":"fp_45cf54deae"}\n\n',
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":" anything?"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"system_fingerprint":"fp_45cf54deae"}\n\n',
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}],"system_fingerprint":"fp_45cf54deae"}\n\n',
        b'data: {"id":"gen-1731500000-Xq3LmZ9vR2pT8kWb1NcY","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk","created":1731500000,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}\n\n',
        b"data: [DONE]\n\n",
    ),
    usage=(40, 6, 46),
)

# "event:" and "id:" field lines before "data:" (the Anthropic framing llama.cpp's
# format_anthropic_sse writes, carrying OpenAI chunks); the usage event's field
# lines arrive in a write of their own before its data line.
EVENT_LINES = StreamShape(
    name="event_lines",
    source="ggml-org/llama.cpp tools/server/server-common.cpp (format_anthropic_sse: event line then data line) + WHATWG HTML, Server-sent events, interpreting an event stream (id/event fields)",
    endpoint="chat/completions",
    frames=(
        b'event: chunk\nid: 1\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'event: chunk\nid: 2\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{"content":"One"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'event: chunk\nid: 3\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{"content":","},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'event: chunk\nid: 4\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{"content":" two"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'event: chunk\nid: 5\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{"content":", three."},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
        b'event: chunk\nid: 6\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n',
        b"event: chunk\nid: 7\n",
        b'data: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[],"usage":{"prompt_tokens":18,"completion_tokens":8,"total_tokens":26}}\n\n',
        b"event: done\nid: 8\ndata: [DONE]\n\n",
    ),
    client_frames=(
        b'event: chunk\nid: 1\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n',
        b'event: chunk\nid: 2\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{"content":"One"},"logprobs":null,"finish_reason":null}]}\n\n',
        b'event: chunk\nid: 3\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{"content":","},"logprobs":null,"finish_reason":null}]}\n\n',
        b'event: chunk\nid: 4\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{"content":" two"},"logprobs":null,"finish_reason":null}]}\n\n',
        b'event: chunk\nid: 5\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{"content":", three."},"logprobs":null,"finish_reason":null}]}\n\n',
        b'event: chunk\nid: 6\ndata: {"id":"chatcmpl-B8kQ2rVx7ZfN3mYp4LsT6wHd9Jc1a","object":"chat.completion.chunk","created":1731600000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_831e067d82","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n',
        b"event: done\nid: 8\ndata: [DONE]\n\n",
    ),
    usage=(18, 8, 26),
)

# Azure OpenAI: keys sorted alphabetically, a first chunk with "choices":[] and empty
# id/model/object that carries prompt_filter_results and no "usage" key (it stays),
# content_filter_results inside every choice, "usage":null on the regular chunks.
AZURE = StreamShape(
    name="azure",
    source="Azure OpenAI chat-completions stream captures (gpt-4o-2024-11-20 with include_usage) kept as fixtures in public repos; layout also in quarkiverse/quarkus-langchain4j's Azure streaming test ('generated from a true API call to Azure OpenAI')",
    endpoint="chat/completions",
    frames=(
        b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}]}\n\n',
        b'data: {"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291","usage":null}\n\n',
        b'data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":"Hello"},"finish_reason":null,"index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291","usage":null}\n\n',
        b'data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":"!"},"finish_reason":null,"index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291","usage":null}\n\n',
        b'data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":" How"},"finish_reason":null,"index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291","usage":null}\n\n',
        b'data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":" can I help?"},"finish_reason":null,"index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291","usage":null}\n\n',
        b'data: {"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291","usage":null}\n\n',
        b'data: {"choices":[],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291","usage":{"completion_tokens":7,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":52,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0},"total_tokens":59}}\n\n',
        b"data: [DONE]\n\n",
    ),
    client_frames=(
        b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}]}\n\n',
        b'data: {"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291"}\n\n',
        b'data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":"Hello"},"finish_reason":null,"index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291"}\n\n',
        b'data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":"!"},"finish_reason":null,"index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291"}\n\n',
        b'data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":" How"},"finish_reason":null,"index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291"}\n\n',
        b'data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":" can I help?"},"finish_reason":null,"index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291"}\n\n',
        b'data: {"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":1731700000,"id":"chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_b705f0c291"}\n\n',
        b"data: [DONE]\n\n",
    ),
    usage=(52, 7, 59),
)

# Mistral's API: the last content token, finish_reason and usage share one chunk
# (usage key order prompt/total/completion), no separate usage event, no
# "usage":null; the finish chunk is cut inside the usage object.
USAGE_ON_FINISH_CHUNK = StreamShape(
    name="usage_on_finish_chunk",
    source="M-Lai-ai/LLM-Provider-reference Mistral/streaming.md (captured api.mistral.ai /v1/chat/completions stream)",
    endpoint="chat/completions",
    frames=(
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}\n\n',
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":" from"},"finish_reason":null}]}\n\n',
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":" Mist"},"finish_reason":null}]}\n\n',
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":"ral"},"finish_reason":null}]}\n\n',
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":"."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"total',
        b'_tokens":15,"completion_tokens":6}}\n\n',
        b"data: [DONE]\n\n",
    ),
    client_frames=(
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}\n\n',
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":" from"},"finish_reason":null}]}\n\n',
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":" Mist"},"finish_reason":null}]}\n\n',
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":"ral"},"finish_reason":null}]}\n\n',
        b'data: {"id":"a4b7c2e9f1d84e6b9c3a5f7e2d1b8c06","object":"chat.completion.chunk","created":1731800000,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":"."},"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ),
    usage=(9, 6, 15),
)

# One JSON object's data split over several "data:" lines, joined with "\n" by the
# parser (the split points sit between JSON tokens, so the joined text is still JSON);
# one event uses "data:" with no space after the colon; the usage event spans three
# data lines.
MULTILINE_DATA = StreamShape(
    name="multiline_data",
    source="WHATWG HTML Living Standard, 9.2.6 Interpreting an event stream (data buffer: each data line's value plus U+000A, final LF removed; one leading space stripped)",
    endpoint="chat/completions",
    frames=(
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk",\n'
        b'data: "created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data: "choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}\n'
        b"\n",
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk",\n'
        b'data: "created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data: "choices":[{"index":0,\n'
        b'data: "delta":{"content":"Red"},"logprobs":null,"finish_reason":null}],"usage":null}\n'
        b"\n",
        b'data:{"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk","created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data:"choices":[{"index":0,"delta":{"content":","},"logprobs":null,"finish_reason":null}],"usage":null}\n'
        b"\n",
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk",\n'
        b'data: "created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data: "choices":[{"index":0,"delta":{"content":" green"},"logprobs":null,"finish_reason":null}],"usage":null}\n'
        b"\n",
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk",\n'
        b'data: "created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data: "choices":[{"index":0,"delta":{"content":" and blue."},"logprobs":null,"finish_reason":null}],"usage":null}\n'
        b"\n",
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk",\n'
        b'data: "created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data: "choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n'
        b"\n",
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk","created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52","choices":[],\n'
        b'data: "usage":{"prompt_tokens":11,"completion_tokens":7,\n'
        b'data: "total_tokens":18}}\n'
        b"\n",
        b"data: [DONE]\n\n",
    ),
    client_frames=(
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk",\n'
        b'data: "created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data: "choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n'
        b"\n",
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk",\n'
        b'data: "created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data: "choices":[{"index":0,\n'
        b'data: "delta":{"content":"Red"},"logprobs":null,"finish_reason":null}]}\n'
        b"\n",
        b'data:{"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk","created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data:"choices":[{"index":0,"delta":{"content":","},"logprobs":null,"finish_reason":null}]}\n'
        b"\n",
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk",\n'
        b'data: "created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data: "choices":[{"index":0,"delta":{"content":" green"},"logprobs":null,"finish_reason":null}]}\n'
        b"\n",
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk",\n'
        b'data: "created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data: "choices":[{"index":0,"delta":{"content":" and blue."},"logprobs":null,"finish_reason":null}]}\n'
        b"\n",
        b'data: {"id":"chatcmpl-AZm4pW8rT2yK6nQ1vB5xC9dF3gH7j","object":"chat.completion.chunk",\n'
        b'data: "created":1731900000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9b78b61c52",\n'
        b'data: "choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n'
        b"\n",
        b"data: [DONE]\n\n",
    ),
    usage=(11, 7, 18),
)

# Bare CR line ends: lines end "\r", events end "\r\r", a comment included; one
# event is cut between its two CRs, so a reader cannot tell the event is over
# until the second CR arrives.
CR_ONLY = StreamShape(
    name="cr_only",
    source="WHATWG HTML Living Standard, 9.2.5 Parsing an event stream (end-of-line = CRLF | LF | CR) and 9.2.6 Interpreting an event stream",
    endpoint="chat/completions",
    frames=(
        b": keep-alive\r\r",
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}\r\r',
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{"content":"Yes"},"logprobs":null,"finish_reason":null}],"usage":null}\r\r',
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{"content":","},"logprobs":null,"finish_reason":null}],"usage":null}\r',
        b"\r",
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{"content":" indeed."},"logprobs":null,"finish_reason":null}],"usage":null}\r\r',
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\r\r',
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[],"usage":{"prompt_tokens":23,"completion_tokens":5,"total_tokens":28}}\r\r',
        b"data: [DONE]\r\r",
    ),
    client_frames=(
        b": keep-alive\r\r",
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\r\r',
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{"content":"Yes"},"logprobs":null,"finish_reason":null}]}\r\r',
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{"content":","},"logprobs":null,"finish_reason":null}]}\r\r',
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{"content":" indeed."},"logprobs":null,"finish_reason":null}]}\r\r',
        b'data: {"id":"chatcmpl-C3nT8yQ1wE5rU7iO9pA2sD4fG6hJk","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4.1-mini-2025-04-14","system_fingerprint":"fp_6f2eabb9a5","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\r\r',
        b"data: [DONE]\r\r",
    ),
    usage=(23, 5, 28),
)

# Python json.dumps defaults everywhere (", " and ": "), "usage": null on the chunks
# and "choices": [] on the usage event; one chunk puts "usage": null first, so the
# comma after it (not before) goes with it.
SPACED_JSON = StreamShape(
    name="spaced_json",
    source="Python standard library json.dumps defaults (separators=(', ', ': ')), as Python servers that dump chunk dicts without separators= write them",
    endpoint="chat/completions",
    frames=(
        b'data: {"id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}], "usage": null}\n\n',
        b'data: {"id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [{"index": 0, "delta": {"content": "Sure"}, "finish_reason": null}], "usage": null}\n\n',
        b'data: {"usage": null, "id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [{"index": 0, "delta": {"content": " thing"}, "finish_reason": null}]}\n\n',
        b'data: {"id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [{"index": 0, "delta": {"content": "! Here you go."}, "finish_reason": null}], "usage": null}\n\n',
        b'data: {"id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": null}\n\n',
        b'data: {"id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [], "usage": {"prompt_tokens": 33, "completion_tokens": 10, "total_tokens": 43}}\n\n',
        b"data: [DONE]\n\n",
    ),
    client_frames=(
        b'data: {"id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}\n\n',
        b'data: {"id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [{"index": 0, "delta": {"content": "Sure"}, "finish_reason": null}]}\n\n',
        b'data: {"id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [{"index": 0, "delta": {"content": " thing"}, "finish_reason": null}]}\n\n',
        b'data: {"id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [{"index": 0, "delta": {"content": "! Here you go."}, "finish_reason": null}]}\n\n',
        b'data: {"id": "chatcmpl-8c5e1f9a2b3d4c6e", "object": "chat.completion.chunk", "created": 1732100000, "model": "Qwen/Qwen2.5-7B-Instruct", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ),
    usage=(33, 10, 43),
)

SHAPES: tuple[StreamShape, ...] = (
    OPENAI,
    VLLM,
    VLLM_COMPLETIONS,
    LLAMA_CPP_SERVER,
    OLLAMA,
    SSE_STARLETTE,
    OPENROUTER,
    EVENT_LINES,
    AZURE,
    USAGE_ON_FINISH_CHUNK,
    MULTILINE_DATA,
    CR_ONLY,
    SPACED_JSON,
)


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _events(stream: bytes) -> list[list[bytes]]:
    """The stream's events as lists of lines, split the WHATWG way."""
    lines = _LINE_END.split(stream)
    assert lines[-1] == b"", "the stream does not end with a line end"
    events: list[list[bytes]] = []
    current: list[bytes] = []
    for line in lines[:-1]:
        if line:
            current.append(line)
        elif current:
            events.append(current)
            current = []
    assert not current, "the last event has no terminating blank line"
    return events


def _parse(event: list[bytes]) -> tuple[list[bytes], dict[str, object] | None]:
    """The event's non-data lines, and its data payload parsed as a JSON object (None for [DONE] or no data)."""
    others: list[bytes] = []
    data: list[bytes] = []
    for line in event:
        name, _, value = line.partition(b":")
        if name == b"data":
            data.append(value[1:] if value.startswith(b" ") else value)
        else:
            others.append(line)
    payload = b"\n".join(data)
    if not data or payload == b"[DONE]":
        return others, None
    obj: object = orjson.loads(payload)
    assert isinstance(obj, dict), payload
    return others, obj


def check_corpus() -> None:
    """Every data payload parses, `frames` report exactly `usage`, and `client_frames` are `frames` minus the usage."""
    assert len({shape.name for shape in SHAPES}) == len(SHAPES)
    assert len({shape.usage for shape in SHAPES}) == len(SHAPES)
    for shape in SHAPES:
        assert shape.endpoint in ("chat/completions", "completions"), shape.name
        prompt, completion, total = shape.usage
        assert prompt + completion == total, shape.name
        upstream = [_parse(event) for event in _events(b"".join(shape.frames))]
        client = [_parse(event) for event in _events(b"".join(shape.client_frames))]
        reported: list[tuple[object, object, object]] = []
        expected: list[tuple[list[bytes], dict[str, object] | None]] = []
        for others, obj in upstream:
            if obj is None or obj.get("usage") is None:
                expected.append((others, None if obj is None else {k: v for k, v in obj.items() if k != "usage"}))
                continue
            usage = obj["usage"]
            assert isinstance(usage, dict), shape.name
            reported.append((usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]))
            if obj.get("choices"):
                expected.append((others, {k: v for k, v in obj.items() if k != "usage"}))
        assert reported == [shape.usage], (shape.name, reported)
        assert all(obj is None or "usage" not in obj for _, obj in client), shape.name
        assert client == expected, shape.name


if __name__ == "__main__":
    check_corpus()
