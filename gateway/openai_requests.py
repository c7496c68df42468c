"""The OpenAI request bodies the proxy relays, as /openapi.json shows them.

The proxy itself never decodes them into these: it reads the model and relays the bytes, so every
other field OpenAI or a provider defines passes too (hence no forbid_unknown_fields)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType


class ChatMessage(msgspec.Struct, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | UnsetType = UNSET
    tool_call_id: str | UnsetType = UNSET
    tool_calls: list[dict[str, Any]] | UnsetType = UNSET


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool | UnsetType = UNSET


class ChatCompletionRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: list[ChatMessage]
    stream: bool | UnsetType = UNSET
    stream_options: StreamOptions | UnsetType = UNSET
    max_tokens: int | UnsetType = UNSET
    max_completion_tokens: int | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    n: int | UnsetType = UNSET
    stop: str | list[str] | UnsetType = UNSET
    tools: list[dict[str, Any]] | UnsetType = UNSET
    tool_choice: str | dict[str, Any] | UnsetType = UNSET
    response_format: dict[str, Any] | UnsetType = UNSET
    user: str | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET
    fallbacks: list[str] | UnsetType = UNSET


class CompletionRequest(msgspec.Struct, kw_only=True):
    model: str
    prompt: str | list[str]
    stream: bool | UnsetType = UNSET
    stream_options: StreamOptions | UnsetType = UNSET
    max_tokens: int | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    n: int | UnsetType = UNSET
    stop: str | list[str] | UnsetType = UNSET
    user: str | UnsetType = UNSET


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[Any]  # texts, or token ids: msgspec's schema takes one list type in a union
    encoding_format: Literal["float", "base64"] | UnsetType = UNSET
    dimensions: int | UnsetType = UNSET
    user: str | UnsetType = UNSET


class ModerationRequest(msgspec.Struct, kw_only=True):
    input: str | list[Any]  # texts, or OpenAI's text and image_url parts
    model: str | UnsetType = UNSET  # general_settings.moderation_model, or the moderation group, when left out


class ImageGenerationRequest(msgspec.Struct, kw_only=True):
    model: str
    prompt: str
    n: int | UnsetType = UNSET
    size: str | UnsetType = UNSET
    quality: str | UnsetType = UNSET
    style: str | UnsetType = UNSET
    response_format: Literal["url", "b64_json"] | UnsetType = UNSET
    user: str | UnsetType = UNSET


class SpeechRequest(msgspec.Struct, kw_only=True):
    """openai-python's SpeechCreateParams; the answer is the audio's bytes."""

    model: str
    input: str
    voice: str | dict[str, Any]
    instructions: str | UnsetType = UNSET
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | UnsetType = UNSET
    speed: float | UnsetType = UNSET
    stream_format: Literal["sse", "audio"] | UnsetType = UNSET


class TranscriptionRequest(msgspec.Struct, kw_only=True):
    """openai-python's TranscriptionCreateParams, as the fields of a multipart/form-data body (translations
    take the same but `language`); the gateway reads only `model`, which must come before the file."""

    model: str
    file: bytes  # the audio file's part, sent as binary
    language: str | UnsetType = UNSET
    prompt: str | UnsetType = UNSET
    response_format: Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"] | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    stream: bool | UnsetType = UNSET


class RerankRequest(msgspec.Struct, kw_only=True):
    """Cohere's rerank request (v1 and v2), as LiteLLM's /rerank takes it; Jina and vLLM take the same."""

    model: str
    query: str
    documents: list[Any]  # texts, or objects (Cohere v1's {"text": ...}, Jina's multimodal ones)
    top_n: int | UnsetType = UNSET
    return_documents: bool | UnsetType = UNSET
    rank_fields: list[str] | UnsetType = UNSET
    max_chunks_per_doc: int | UnsetType = UNSET  # Cohere v1
    max_tokens_per_doc: int | UnsetType = UNSET  # Cohere v2


REQUESTS: dict[str, type] = {"chat/completions": ChatCompletionRequest, "completions": CompletionRequest,
                             "embeddings": EmbeddingRequest, "moderations": ModerationRequest,
                             "images/generations": ImageGenerationRequest, "audio/speech": SpeechRequest,
                             "rerank": RerankRequest, "audio/transcriptions": TranscriptionRequest,
                             "audio/translations": TranscriptionRequest}
