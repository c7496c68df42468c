"""What an audio or rerank answer used, read from its wire shape, and what it costs.

- Transcriptions and translations (openai-python's `Transcription`, `TranscriptionVerbose`): `usage` is
  `{"type": "duration", "seconds": s}` (whisper-1) or `{"type": "tokens", "input_tokens", ...}`
  (gpt-4o-transcribe); `verbose_json` also has a top-level `duration`. Token usage is charged by the
  token when the deployment has token prices; otherwise seconds are charged at `input_cost_per_second`.
  An answer with no duration (response_format `text`, `srt`, `vtt`, or a server that reports none) is
  charged nothing for seconds: the gateway does not decode the audio to measure it.
- Speech: the characters of `input` at `input_cost_per_character`, else about four to a token at
  `input_cost_per_token`; known before the request is sent.
- Rerank: Cohere's `meta.billed_units.search_units` at `input_cost_per_query` (one unit when priced per
  query and the answer names none, as LiteLLM counts Cohere), plus Jina's and vLLM's
  `usage.total_tokens` at `input_cost_per_token`.
"""

from __future__ import annotations

import math

import msgspec

from gateway.pricing import Price
from gateway.usage import CHARS_PER_TOKEN, Usage


class AudioUsage(msgspec.Struct):
    type: str | None = None
    seconds: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


class TranscriptionAnswer(msgspec.Struct):
    duration: float | None = None
    usage: AudioUsage | None = None


class BilledUnits(msgspec.Struct):
    search_units: float | None = None


class RerankMeta(msgspec.Struct):
    billed_units: BilledUnits | None = None


class RerankTokens(msgspec.Struct):
    total_tokens: int | None = None


class RerankAnswer(msgspec.Struct):
    meta: RerankMeta | None = None
    usage: RerankTokens | None = None


class Charge(msgspec.Struct, frozen=True):
    usage: Usage
    cost: float
    seconds: float | None = None  # audio: the duration charged, None when the answer gave none


_TRANSCRIPTION = msgspec.json.Decoder(TranscriptionAnswer)
_RERANK = msgspec.json.Decoder(RerankAnswer)


def transcription(price: Price, payload: bytes) -> Charge:
    try:
        answer = _TRANSCRIPTION.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Charge(Usage(), 0.0)  # text, srt or vtt: no usage in it
    return audio_usage(price, answer.usage, answer.duration)


def audio_usage(price: Price, usage: AudioUsage | None, duration: float | None) -> Charge:
    if usage is not None and usage.type == "tokens" and usage.input_tokens is not None:
        output = usage.output_tokens or 0
        tokens = Usage(usage.input_tokens, output, usage.total_tokens or usage.input_tokens + output)
        if price.input_cost_per_token or price.output_cost_per_token or not price.cost_per_second:
            return Charge(tokens, price.cost(tokens))
    seconds = usage.seconds if usage is not None and usage.type == "duration" else duration
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return Charge(Usage(), 0.0)
    return Charge(Usage(), price.units_cost(seconds=seconds), seconds)


def transcription_stream(price: Price, tail: bytes) -> Charge:
    """A streamed transcription's usage, from its last event that carries one (`transcript.text.done`)."""
    for line in reversed(tail.splitlines()):
        if line.startswith(b"data:") and b'"usage"' in line:
            try:
                found = msgspec.json.decode(line[5:].strip(), type=TranscriptionAnswer)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            return audio_usage(price, found.usage, None)
    return Charge(Usage(), 0.0)


def speech(price: Price, text: str) -> Charge:
    if price.cost_per_character:
        return Charge(Usage(), price.units_cost(characters=len(text)))
    tokens = -(-len(text) // CHARS_PER_TOKEN)
    usage = Usage(tokens, 0, tokens, estimated=True)
    return Charge(usage, price.cost(usage))


def rerank(price: Price, payload: bytes) -> Charge:
    try:
        answer = _RERANK.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        answer = RerankAnswer()
    units = answer.meta.billed_units.search_units if answer.meta and answer.meta.billed_units else None
    tokens = answer.usage.total_tokens if answer.usage is not None else None
    usage = Usage(tokens, 0, tokens) if tokens else Usage()
    queries = units if units is not None and units >= 0 else 1.0
    return Charge(usage, price.cost(usage) + queries * price.cost_per_query)
