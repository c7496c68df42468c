"""A fake audio and rerank upstream on loopback, in a thread of its own, speaking the real wire shapes.

- /v1/audio/transcriptions and /v1/audio/translations read the upload as it arrives (recording how
  many bytes came before the first piece was in, and setting `receiving` once `receiving_after` bytes
  are in), then parse the form and measure the WAV file it holds. Answers as openai-python's types
  have them: `json` -> `Transcription` with `usage: {"type": "duration", "seconds"}`; `verbose_json` ->
  `TranscriptionVerbose` with its top-level `duration` (and no usage, as older servers send it); `text`
  -> the text alone, as text/plain.
- /v1/audio/speech answers audio bytes in pieces; `{"fake": {"gate": name}}` in the body holds all but
  the first piece until the gate opens, `{"fake": {"break": true}}` closes the connection after it.
- /v1/rerank and /v2/rerank answer in the shape of the server the model name says: `rerank-*` Cohere's
  (`meta.billed_units.search_units`, one per 100 documents, as Cohere bills), `jina-*` Jina's
  (`usage.total_tokens`), anything else vLLM's (`RerankResponse` in vllm's protocol: id, model,
  usage {prompt_tokens, total_tokens}, results [{index, document {text}, relevance_score}]).
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io
import math
import threading
import uuid
import wave
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.loopback import Loopback

SPEECH_PIECES = 8
STRICT_LIMIT = 1 << 20  # what the `whisper-strict` model takes before it refuses the upload


@dataclass
class Upload:
    path: str
    headers: dict[str, str]
    raw: bytes = b""
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    outcome: str = "pending"  # completed | broken | refused (answered before the body was whole)


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    outcome: str = "pending"  # completed | cancelled


@dataclass
class MediaUpstream(Loopback):
    name: str = "media"
    uploads: list[Upload] = field(default_factory=list, repr=False)
    calls: list[Call] = field(default_factory=list, repr=False)
    port: int = 0
    receiving_after: int = 1 << 20  # bytes of an upload in before `receiving` is set
    handler_cancellation = True

    def __post_init__(self) -> None:
        self._loopback(f"upstream-{self.name}")
        self._gates: dict[str, asyncio.Event] = {}
        self.receiving = threading.Event()

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def open_gate(self, name: str) -> None:
        self._loop.call_soon_threadsafe(self._gate(name).set)

    async def until(self, predicate: Any, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"upstream {self.name}: condition not met within {timeout}s")
            await asyncio.sleep(0.01)

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        app.router.add_post("/v1/audio/translations", self._transcribe)
        app.router.add_post("/v1/audio/speech", self._speech)
        # Azure OpenAI's paths (the deployment in the path, ?api-version= after it; Upload.path keeps the query)
        app.router.add_post("/openai/deployments/{deployment}/audio/transcriptions", self._transcribe)
        app.router.add_post("/openai/deployments/{deployment}/audio/speech", self._speech)
        app.router.add_post("/v1/rerank", self._rerank)
        app.router.add_post("/v2/rerank", self._rerank)
        app.router.add_get("/v1/models", self._models)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "system"}
            for name in ("whisper-1", "gpt-4o-transcribe", "tts-1")]})

    async def _transcribe(self, request: web.Request) -> web.StreamResponse:
        upload = Upload(request.path_qs, dict(request.headers))
        self.uploads.append(upload)
        received = bytearray()
        try:
            async for chunk in request.content.iter_any():
                received += chunk
                if len(received) >= self.receiving_after:
                    self.receiving.set()
                if len(received) >= STRICT_LIMIT and b"whisper-strict" in received[:4096]:
                    # OpenAI's answer to an upload over its limit, given before the rest is read.
                    upload.raw, upload.outcome = bytes(received), "refused"
                    return web.json_response({"error": {
                        "message": f"Maximum content size limit ({STRICT_LIMIT}) exceeded ({len(received)} bytes read)",
                        "type": "server_error", "param": None, "code": None}}, status=413)
        except (ConnectionError, asyncio.CancelledError):
            upload.raw = bytes(received)
            upload.outcome = "broken"
            raise
        finally:
            upload.raw = bytes(received)
        if request.content.exception() is not None or (
                request.content_length is not None and len(received) != request.content_length):
            upload.outcome = "broken"
            return web.json_response({"error": {"message": "short body"}}, status=400)
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + request.headers["Content-Type"].encode() + b"\r\n\r\n" + upload.raw)
        for part in form.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            filename = part.get_filename()
            if filename is not None:
                upload.files[str(name)] = (filename, payload)
            else:
                upload.fields[str(name)] = payload.decode()
        upload.outcome = "completed"
        if "file" not in upload.files:
            return web.json_response({"error": {"message": "file is required", "type": "invalid_request_error",
                                                "param": "file", "code": None}}, status=400)
        with wave.open(io.BytesIO(upload.files["file"][1])) as audio:
            duration = audio.getnframes() / audio.getframerate()
        text = f"{len(upload.files['file'][1])} bytes of audio heard by {upload.fields.get('model')}"
        shape = upload.fields.get("response_format", "json")
        if upload.fields.get("stream") == "true":
            return await self._transcript_events(request, text, duration)
        if shape == "text":
            return web.Response(text=text + "\n", content_type="text/plain")
        if shape == "verbose_json":
            task = "translate" if request.path.endswith("translations") else "transcribe"
            return web.json_response({"task": task, "language": "english", "duration": duration, "text": text,
                                      "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": duration,
                                                    "text": text, "tokens": [50364], "temperature": 0.0,
                                                    "avg_logprob": -0.2, "compression_ratio": 1.0,
                                                    "no_speech_prob": 0.01}]})
        return web.json_response({"text": text, "usage": {"type": "duration", "seconds": duration}})

    async def _transcript_events(self, request: web.Request, text: str, duration: float) -> web.StreamResponse:
        """gpt-4o-transcribe's stream: `transcript.text.delta` events, then `transcript.text.done` with the
        usage in tokens (openai-python's TranscriptionTextDeltaEvent and TranscriptionTextDoneEvent)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in text.split(" "):
            event = {"type": "transcript.text.delta", "delta": word + " ", "logprobs": None}
            await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
        audio_tokens = transcript_input_tokens(duration)
        output_tokens = len(text.split(" "))
        done = {"type": "transcript.text.done", "text": text, "logprobs": None, "usage": {
            "type": "tokens", "input_tokens": audio_tokens, "output_tokens": output_tokens,
            "total_tokens": audio_tokens + output_tokens,
            "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0}}}
        await response.write(b"data: " + orjson.dumps(done) + b"\n\n")
        await response.write_eof()
        return response

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        call = Call(request.path_qs, dict(request.headers), body)
        self.calls.append(call)
        audio = speech_audio(body["input"])
        piece = -(-len(audio) // SPEECH_PIECES)
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        try:
            await response.prepare(request)
            await response.write(audio[:piece])
            steer = body.get("fake") or {}
            if steer.get("break"):
                call.outcome = "broken"
                assert request.transport is not None
                request.transport.close()  # mid-audio, the chunked body unfinished
                return response
            gate = steer.get("gate")
            if gate:
                await self._gate(gate).wait()
            for start in range(piece, len(audio), piece):
                await response.write(audio[start:start + piece])
                await asyncio.sleep(0)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            call.outcome = "cancelled"
            raise
        call.outcome = "completed"
        return response

    async def _rerank(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.calls.append(Call(request.path, dict(request.headers), body, "completed"))
        documents = body["documents"]
        texts = [d if isinstance(d, str) else d.get("text", "") for d in documents]
        order = sorted(range(len(texts)), key=lambda i: -_overlap(body["query"], texts[i]))
        top = order[:body.get("top_n") or len(order)]
        scores = {i: round(0.99 - rank * 0.01, 4) for rank, i in enumerate(order)}
        model = body["model"]
        if model.startswith("rerank-"):
            results: list[dict[str, Any]] = [{"index": i, "relevance_score": scores[i]} for i in top]
            if body.get("return_documents"):
                for result in results:
                    result["document"] = {"text": texts[result["index"]]}
            version = "2" if request.path.startswith("/v2") else "1"
            return web.json_response({"id": str(uuid.uuid4()), "results": results, "meta": {
                "api_version": {"version": version}, "billed_units": {"search_units": math.ceil(len(texts) / 100)}}})
        tokens = rerank_tokens(body["query"], texts)
        results = [{"index": i, "document": {"text": texts[i]}, "relevance_score": scores[i]} for i in top]
        if model.startswith("jina-"):
            return web.json_response({"model": model, "usage": {"total_tokens": tokens}, "results": results})
        return web.json_response({"id": f"rerank-{uuid.uuid4().hex}", "model": model,
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "results": results})


def speech_audio(text: str) -> bytes:
    """Bytes standing in for the audio of `text`: an ID3 header and 1 kB a character."""
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"".join(bytes([ord(c) % 256]) * 1024 for c in text)


def transcript_input_tokens(seconds: float) -> int:
    """The fake's audio tokens for `seconds` of audio: ten a second."""
    return int(seconds * 10)


def rerank_tokens(query: str, texts: list[str]) -> int:
    """What the fake counts as a rerank's tokens: the query's words with each document's."""
    return sum(len(query.split()) + len(text.split()) for text in texts)


def _overlap(query: str, text: str) -> int:
    return len(set(query.lower().split()) & set(text.lower().split()))
