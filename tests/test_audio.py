"""/audio/transcriptions, /audio/translations and /audio/speech (and /images/generations and /moderations
through the openai SDK), over real HTTP against a gateway process and fake upstreams on loopback."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import random
import threading
import uuid
import wave
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, free_port, new_virtual_key, spend_record
from tests.media_fakes import MediaUpstream, speech_audio, transcript_input_tokens

MASTER = "sk-audio-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PREFIX = "/olla/litellm"
WHISPER_PER_SECOND = 0.0001  # whisper-1 in the bundled price table
TTS_PER_CHARACTER = 1.5e-05  # tts-1 in the bundled price table
AZURE_KEY = "azure-audio-key"
GPT4O_TRANSCRIBE_IN, GPT4O_TRANSCRIBE_OUT = 2.5e-06, 1e-05  # gpt-4o-transcribe's token prices in the table
IMAGE_PRICE = 0.04
RATE = 16_000


def wav(seconds: float, seed: int = 7) -> bytes:
    """A mono 16-bit WAV file of noise, `seconds` long."""
    frames = int(seconds * RATE)
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(RATE)
        audio.writeframes(random.Random(seed).randbytes(frames * 2))
    return out.getvalue()


AUDIO = wav(100.0)  # 3.2 MB
AUDIO_SECONDS = 100.0


@pytest.fixture(scope="module")
def media() -> Iterator[MediaUpstream]:
    fake = MediaUpstream("audio").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(media: MediaUpstream, upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "model_list": [
            deployment("whisper", media.base_url, model="openai/whisper-1",
                       model_info={"mode": "audio_transcription"}),
            deployment("strict", media.base_url, model="openai/whisper-strict"),
            deployment("whisper-down", f"http://127.0.0.1:{free_port()}/v1", model="openai/whisper-1"),
            deployment("transcribe", media.base_url, model="openai/gpt-4o-transcribe",
                       model_info={"mode": "audio_transcription"}),
            deployment("tts", media.base_url, model="openai/tts-1", model_info={"mode": "audio_speech"}),
            {"model_name": "az-whisper", "litellm_params": {
                "model": "azure/my-whisper", "api_base": media.root_url, "api_key": AZURE_KEY,
                "api_version": "2024-06-01", "input_cost_per_second": WHISPER_PER_SECOND}},
            {"model_name": "az-tts", "litellm_params": {
                "model": "azure/my-tts", "api_base": media.root_url, "api_key": AZURE_KEY,
                "api_version": "2024-06-01", "input_cost_per_character": TTS_PER_CHARACTER}},
            deployment("img", upstream.base_url, output_cost_per_image=IMAGE_PRICE,
                       model_info={"mode": "image_generation"}),
            deployment("mod", upstream.base_url, model_info={"mode": "moderation"}),
            {"model_name": "echo", "litellm_params": {"model": "mock/echo"}},
        ],
        "general_settings": {"master_key": MASTER},
        "gateway_settings": {"path_prefixes": [PREFIX]},
    }
    with Gateway(config) as gw:
        yield gw


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    return await new_virtual_key(http, gw, ADMIN, **fields)


def client(gw: Gateway, key: str = MASTER, base: str = "/v1", request_id: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}{base}", api_key=key, max_retries=0,
                              default_headers={"X-Request-ID": request_id or uuid.uuid4().hex})


class SlowFile(io.RawIOBase):
    """A file the SDK reads in pieces; past `hold_at` bytes it waits until the upstream has started
    receiving: a gateway that held the upload whole would never let it go on."""

    def __init__(self, data: bytes, hold_at: int, upstream_receiving: threading.Event) -> None:
        self.data = data
        self.pos = 0
        self.hold_at = hold_at
        self.receiving = upstream_receiving
        self.held = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.hold_at and not self.held:
            if not self.receiving.wait(30):
                raise TimeoutError("the upstream received nothing while the client was still sending")
            self.held = True
        end = min(len(self.data), self.pos + len(buffer))
        if self.pos < self.hold_at:
            end = min(end, self.hold_at)
        chunk = self.data[self.pos:end]
        buffer[:len(chunk)] = chunk
        self.pos = end
        return len(chunk)


# Transcriptions and translations


async def test_transcription_upload_is_relayed_as_it_arrives(gateway: Gateway, media: MediaUpstream,
                                                             http: aiohttp.ClientSession) -> None:
    """The SDK sends the file in pieces (chunked: the file's length is unknown to it); the upstream has
    the first MiB before the client sends the last third, and gets every byte, the model renamed."""
    media.receiving.clear()
    media.receiving_after = 1 << 20
    request_id = uuid.uuid4().hex
    slow = SlowFile(AUDIO, 2 << 20, media.receiving)
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0,
                       default_headers={"X-Request-ID": request_id}) as sync:
        result = await asyncio.to_thread(sync.audio.transcriptions.create, model="whisper",
                                         file=("speech.wav", slow, "audio/wav"), response_format="verbose_json",
                                         language="en")
    assert slow.held
    assert result.duration == pytest.approx(AUDIO_SECONDS) and result.text.startswith(f"{len(AUDIO)} bytes")
    seen = media.uploads[-1]
    assert seen.outcome == "completed" and seen.path == "/v1/audio/transcriptions"
    assert seen.fields == {"model": "whisper-1", "response_format": "verbose_json", "language": "en"}
    filename, data = seen.files["file"]
    assert filename == "speech.wav" and hashlib.sha256(data).digest() == hashlib.sha256(AUDIO).digest()
    assert seen.headers["Authorization"] == "Bearer sk-upstream-secret"
    assert seen.headers.get("Transfer-Encoding") == "chunked"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["call_type"] == "audio/transcriptions" and record["status"] == "success"
    assert record["spend"] == pytest.approx(AUDIO_SECONDS * WHISPER_PER_SECOND, rel=1e-9)


async def test_azure_deployments_get_audio_at_their_deployment_paths(gateway: Gateway, media: MediaUpstream,
                                                                       http: aiohttp.ClientSession) -> None:
    """An upload and a speech request to `azure/` deployments: Azure's path, api-version and api-key, the
    upload still relayed as it arrives, each charged as any other."""
    request_id = uuid.uuid4().hex
    audio = wav(4.0, seed=5)
    async with client(gateway, request_id=request_id) as sdk:
        result = await sdk.audio.transcriptions.create(model="az-whisper", file=("a.wav", audio, "audio/wav"),
                                                       response_format="verbose_json")
    assert result.duration == pytest.approx(4.0)
    seen = media.uploads[-1]
    assert seen.path == "/openai/deployments/my-whisper/audio/transcriptions?api-version=2024-06-01"
    assert seen.headers["api-key"] == AZURE_KEY and "Authorization" not in seen.headers
    assert seen.fields["model"] == "my-whisper" and seen.files["file"][1] == audio
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(4.0 * WHISPER_PER_SECOND, rel=1e-9)

    request_id = uuid.uuid4().hex
    async with client(gateway, request_id=request_id) as sdk:
        async with sdk.audio.speech.with_streaming_response.create(model="az-tts", voice="alloy",
                                                                   input="Color is light.") as spoken:
            assert len(await spoken.read()) > 0
    call = media.calls[-1]
    assert call.path == "/openai/deployments/my-tts/audio/speech?api-version=2024-06-01"
    assert call.headers["api-key"] == AZURE_KEY and call.body["model"] == "my-tts"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(len("Color is light.") * TTS_PER_CHARACTER, rel=1e-9)


# The SDK marks audio.translations deprecated; OpenAI still serves it, and so does LiteLLM.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("base", ["/v1", PREFIX, f"{PREFIX}/v1"])
async def test_translation_keeps_the_clients_length(gateway: Gateway, media: MediaUpstream,
                                                    http: aiohttp.ClientSession, base: str) -> None:
    """Sent whole by the SDK with a Content-Length, which the upstream gets adjusted for the new name;
    charged for the seconds the answer's `usage` reports, at the table's whisper-1 price."""
    request_id = uuid.uuid4().hex
    audio = wav(12.5, seed=3)
    async with client(gateway, base=base, request_id=request_id) as sdk:
        result = await sdk.audio.translations.create(model="whisper", file=("clip.wav", audio),
                                                     response_format="json")
    assert result.text.startswith(f"{len(audio)} bytes")
    seen = media.uploads[-1]
    assert seen.path == "/v1/audio/translations" and seen.fields["model"] == "whisper-1"
    assert seen.files["file"][1] == audio
    assert int(seen.headers["Content-Length"]) == len(seen.raw)
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(12.5 * WHISPER_PER_SECOND, rel=1e-9)


async def test_an_answer_without_a_duration_is_not_charged_seconds(gateway: Gateway,
                                                                  http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    async with client(gateway, request_id=request_id) as sdk:
        text = await sdk.audio.transcriptions.create(model="whisper", file=("clip.wav", wav(2.0)),
                                                     response_format="text")
    assert isinstance(text, str) and "bytes of audio heard by whisper-1" in text
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["status"] == "success" and record["spend"] == 0


async def test_a_streamed_transcription_is_charged_its_tokens(gateway: Gateway, media: MediaUpstream,
                                                             http: aiohttp.ClientSession) -> None:
    """gpt-4o-transcribe streams its text and reports tokens at the end: relayed as it comes, and charged
    those tokens at the table's token prices rather than by the second."""
    request_id = uuid.uuid4().hex
    audio = wav(4.0, seed=5)
    async with client(gateway, request_id=request_id) as sdk:
        stream = await sdk.audio.transcriptions.create(model="transcribe", file=("clip.wav", audio), stream=True)
        events = [event async for event in stream]
    assert [event.type for event in events][-1] == "transcript.text.done"
    done = events[-1]
    assert done.type == "transcript.text.done" and done.usage is not None
    assert "".join(e.delta for e in events if e.type == "transcript.text.delta").strip() == done.text
    assert media.uploads[-1].fields["model"] == "gpt-4o-transcribe"
    input_tokens = transcript_input_tokens(4.0)
    output_tokens = len(done.text.split(" "))
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["prompt_tokens"] == input_tokens and record["completion_tokens"] == output_tokens
    assert record["spend"] == pytest.approx(input_tokens * GPT4O_TRANSCRIBE_IN + output_tokens * GPT4O_TRANSCRIBE_OUT,
                                            rel=1e-9)


def form(*parts: tuple[str, bytes, str | None]) -> tuple[bytes, str]:
    boundary = "----gateway-test-" + uuid.uuid4().hex
    out = bytearray()
    for name, value, filename in parts:
        out += f"--{boundary}\r\n".encode()
        if filename:
            out += (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    "Content-Type: audio/wav\r\n\r\n").encode()
        else:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


async def upload(http: aiohttp.ClientSession, gw: Gateway, body: bytes, content_type: str,
                 key: str = MASTER) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    async with http.post(f"{gw.url}/v1/audio/transcriptions", data=io.BytesIO(body), headers=headers) as r:
        raw = await r.read()
        return r.status, orjson.loads(raw) if r.content_type == "application/json" else raw


async def test_a_model_after_a_small_file_is_found(gateway: Gateway, media: MediaUpstream,
                                                   http: aiohttp.ClientSession) -> None:
    audio = wav(1.0)
    body, content_type = form(("file", audio, "a.wav"), ("model", b"whisper", None))
    status, answer = await upload(http, gateway, body, content_type)
    assert status == 200, answer
    assert media.uploads[-1].fields["model"] == "whisper-1" and media.uploads[-1].files["file"][1] == audio


async def test_a_model_after_a_large_file_is_refused(gateway: Gateway, media: MediaUpstream,
                                                     http: aiohttp.ClientSession) -> None:
    before = len(media.uploads)
    body, content_type = form(("file", wav(200.0), "big.wav"), ("model", b"whisper", None))
    status, answer = await upload(http, gateway, body, content_type)
    assert status == 400 and answer["error"]["param"] == "model"
    assert "send the model field before the file" in answer["error"]["message"]
    assert len(media.uploads) == before


@pytest.mark.parametrize(("body", "content_type", "words"), [
    (b'{"model": "whisper"}', "application/json", "multipart/form-data"),
    (b"--x\r\n", "multipart/form-data", "no boundary"),
    (form(("file", b"RIFF", "a.wav"))[0], None, "'model'"),
    (b"--b\r\nContent-Disposition: form-data\r\n\r\nwhisper\r\n--b--\r\n", "multipart/form-data; boundary=b",
     "no Content-Disposition name"),
    (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisp", "multipart/form-data; boundary=b",
     "ended before"),
    (form(("model", b"", None))[0], None, "non-empty"),
])
async def test_bad_multipart_gets_a_clear_400(gateway: Gateway, http: aiohttp.ClientSession, body: bytes,
                                              content_type: str | None, words: str) -> None:
    if content_type is None:
        content_type = "multipart/form-data; boundary=" + body.split(b"\r\n", 1)[0][2:].decode()
    status, answer = await upload(http, gateway, body, content_type)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error", answer
    assert words in answer["error"]["message"]


async def test_a_compressed_upload_goes_upstream_inflated(gateway: Gateway, media: MediaUpstream,
                                                          http: aiohttp.ClientSession) -> None:
    audio = wav(3.0, seed=11)
    body, content_type = form(("model", b"whisper", None), ("file", audio, "a.wav"))
    headers = {"Authorization": f"Bearer {MASTER}", "Content-Type": content_type, "Content-Encoding": "gzip"}
    async with http.post(f"{gateway.url}/v1/audio/transcriptions", data=io.BytesIO(gzip.compress(body)),
                         headers=headers) as r:
        assert r.status == 200, await r.text()
    seen = media.uploads[-1]
    assert seen.files["file"][1] == audio and seen.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Encoding" not in seen.headers


async def test_an_upstreams_refusal_is_relayed_in_openais_envelope(gateway: Gateway, media: MediaUpstream,
                                                                    http: aiohttp.ClientSession) -> None:
    body, content_type = form(("model", b"whisper", None), ("language", b"en", None))
    status, answer = await upload(http, gateway, body, content_type)
    assert status == 400 and answer["error"] == {"message": "file is required", "type": "invalid_request_error",
                                                 "param": "file", "code": "400"}
    assert media.uploads[-1].fields == {"model": "whisper-1", "language": "en"}


async def test_an_upstream_that_refuses_mid_upload_is_heard(gateway: Gateway, media: MediaUpstream,
                                                             http: aiohttp.ClientSession) -> None:
    """The upstream answers 413 after its first MiB: the gateway stops sending and relays the answer;
    the connection it cut short is not used again."""
    request_id = uuid.uuid4().hex
    body, content_type = form(("model", b"strict", None), ("file", AUDIO, "speech.wav"))
    headers = {"Authorization": f"Bearer {MASTER}", "Content-Type": content_type, "X-Request-ID": request_id}
    async with http.post(f"{gateway.url}/v1/audio/transcriptions", data=io.BytesIO(body), headers=headers) as r:
        answer = await r.json()
    assert r.status == 413 and answer["error"]["message"].startswith("Maximum content size limit (1048576)")
    assert media.uploads[-1].outcome == "refused" and len(media.uploads[-1].raw) < len(body)
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["status"] == "failure" and record["spend"] == 0
    status, answer = await upload(http, gateway, *form(("model", b"whisper", None), ("file", wav(1.0), "a.wav")))
    assert status == 200 and media.uploads[-1].outcome == "completed"


async def test_an_unreachable_upstream_is_an_openai_error(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    body, content_type = form(("model", b"whisper-down", None), ("file", wav(1.0), "a.wav"))
    headers = {"Authorization": f"Bearer {MASTER}", "Content-Type": content_type, "X-Request-ID": request_id}
    async with http.post(f"{gateway.url}/audio/transcriptions", data=io.BytesIO(body), headers=headers) as r:
        answer = await r.json()
    assert r.status == 502 and answer["error"]["type"] == "api_connection_error"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["status"] == "failure" and record["spend"] == 0


async def test_an_unknown_model_is_refused_before_the_file_is_read(gateway: Gateway,
                                                                   http: aiohttp.ClientSession) -> None:
    body, content_type = form(("model", b"nope", None), ("file", wav(1.0), "a.wav"))
    status, answer = await upload(http, gateway, body, content_type)
    assert status == 404 and answer["error"]["code"] == "model_not_found"


async def test_a_client_that_hangs_up_mid_upload_is_settled_once(gateway: Gateway, media: MediaUpstream,
                                                                 http: aiohttp.ClientSession) -> None:
    media.receiving.clear()
    media.receiving_after = 1 << 20
    request_id = uuid.uuid4().hex
    body, content_type = form(("model", b"whisper", None), ("file", AUDIO, "speech.wav"))
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write((f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {MASTER}\r\n"
                  f"X-Request-ID: {request_id}\r\nContent-Type: {content_type}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n").encode())
    writer.write(body[:len(body) // 2])
    await writer.drain()
    await asyncio.to_thread(media.receiving.wait, 20)
    assert media.receiving.is_set()
    writer.close()
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["status"] == "cancelled" and record["spend"] == 0
    await media.until(lambda: media.uploads[-1].outcome == "broken")
    async with http.get(f"{gateway.url}/spend/logs", params={"request_id": request_id}, headers=ADMIN) as r:
        assert len(await r.json()) == 1
    del reader


async def test_rate_limits_refuse_uploads(gateway: Gateway, media: MediaUpstream,
                                          http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, rpm_limit=1)
    async with client(gateway, key) as sdk:
        await sdk.audio.transcriptions.create(model="whisper", file=("a.wav", wav(0.5)))
        before = len(media.uploads)
        with pytest.raises(openai.RateLimitError) as refused:
            await sdk.audio.transcriptions.create(model="whisper", file=("a.wav", wav(0.5)))
    assert refused.value.status_code == 429 and isinstance(refused.value.body, dict)
    assert "Rate limit reached" in refused.value.body["message"]
    assert len(media.uploads) == before


async def test_model_access_applies_to_uploads(gateway: Gateway, media: MediaUpstream,
                                               http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, models=["tts"])
    before = len(media.uploads)
    async with client(gateway, key) as sdk:
        with pytest.raises(openai.AuthenticationError) as refused:
            await sdk.audio.transcriptions.create(model="whisper", file=("a.wav", wav(0.5)))
    assert isinstance(refused.value.body, dict) and refused.value.body["type"] == "key_model_access_denied"
    assert len(media.uploads) == before


# Speech


async def test_speech_is_streamed_back_as_it_is_made(gateway: Gateway, media: MediaUpstream,
                                                     http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    text = "The quick brown fox jumps over the lazy dog."
    gate = uuid.uuid4().hex
    expected = speech_audio(text)
    received = bytearray()
    async with client(gateway, request_id=request_id) as sdk, sdk.audio.speech.with_streaming_response.create(
            model="tts", voice="alloy", input=text, response_format="mp3",
            extra_body={"fake": {"gate": gate}}) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        async for chunk in response.iter_bytes():
            received += chunk
            if gate:
                # The first piece is here while the upstream is still holding the rest.
                assert media.calls[-1].outcome == "pending" and 0 < len(received) < len(expected)
                media.open_gate(gate)
                gate = ""
    assert bytes(received) == expected
    call = media.calls[-1]
    assert call.body["model"] == "tts-1" and call.body["voice"] == "alloy" and call.outcome == "completed"
    assert call.headers["Authorization"] == "Bearer sk-upstream-secret"
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["call_type"] == "audio/speech"
    assert record["spend"] == pytest.approx(len(text) * TTS_PER_CHARACTER, rel=1e-9)


async def test_a_client_that_leaves_mid_speech_is_charged_once(gateway: Gateway, media: MediaUpstream,
                                                               http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    text = "Never heard to the end."
    gate = uuid.uuid4().hex
    headers = {**ADMIN, "X-Request-ID": request_id}
    response = await http.post(f"{gateway.url}{PREFIX}/audio/speech", headers=headers,
                               json={"model": "tts", "voice": "echo", "input": text, "fake": {"gate": gate}})
    assert response.status == 200
    assert await response.content.readany()
    response.close()
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["status"] == "cancelled"
    assert record["spend"] == pytest.approx(len(text) * TTS_PER_CHARACTER, rel=1e-9)
    await media.until(lambda: media.calls[-1].outcome == "cancelled")
    media.open_gate(gate)
    async with http.get(f"{gateway.url}/spend/logs", params={"request_id": request_id}, headers=ADMIN) as r:
        assert len(await r.json()) == 1


async def test_an_upstream_that_breaks_off_mid_speech_breaks_the_answer(gateway: Gateway, media: MediaUpstream,
                                                                        http: aiohttp.ClientSession) -> None:
    """Never a made-up end: the client's body is cut short too, and the request settles once, failed."""
    request_id = uuid.uuid4().hex
    headers = {**ADMIN, "X-Request-ID": request_id}
    async with http.post(f"{gateway.url}/v1/audio/speech", headers=headers,
                         json={"model": "tts", "voice": "echo", "input": "cut", "fake": {"break": True}}) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["status"] == "failure" and record["spend"] == pytest.approx(3 * TTS_PER_CHARACTER, rel=1e-9)
    async with http.get(f"{gateway.url}/spend/logs", params={"request_id": request_id}, headers=ADMIN) as r:
        assert len(await r.json()) == 1


async def test_a_speech_budget_counts_characters(gateway: Gateway, media: MediaUpstream,
                                                 http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, max_budget=TTS_PER_CHARACTER * 50)
    before = len(media.calls)
    async with client(gateway, key) as sdk:
        with pytest.raises(openai.APIStatusError) as refused:
            await sdk.audio.speech.create(model="tts", voice="alloy", input="x" * 60)
        assert isinstance(refused.value.body, dict) and refused.value.body["type"] == "budget_exceeded"
        assert len(media.calls) == before
        spoken = await sdk.audio.speech.create(model="tts", voice="alloy", input="y" * 40)
    assert spoken.content == speech_audio("y" * 40)


@pytest.mark.parametrize(("payload", "param"), [
    ({"model": "tts", "voice": "alloy"}, "input"),
    ({"model": "tts", "voice": "alloy", "input": ""}, "input"),
    ({"voice": "alloy", "input": "hi"}, "model"),
])
async def test_bad_speech_requests(gateway: Gateway, http: aiohttp.ClientSession, payload: dict[str, Any],
                                   param: str) -> None:
    async with http.post(f"{gateway.url}/v1/audio/speech", json=payload, headers=ADMIN) as r:
        body = await r.json()
    assert r.status == 400 and body["error"]["param"] == param


async def test_the_mock_provider_does_not_pretend_to_speak(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway.url}/v1/audio/speech", json={"model": "echo", "voice": "a", "input": "hi"},
                         headers=ADMIN) as r:
        body = await r.json()
    assert r.status == 400 and "does not serve" in body["error"]["message"]


# Images and moderations through the SDK


async def test_sdk_images_and_moderations(gateway: Gateway, upstream: FakeUpstream,
                                          http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    async with client(gateway, request_id=request_id) as sdk:
        images = await sdk.images.generate(model="img", prompt="a red fox", n=3)
    assert [image.url for image in images.data or []] == [f"https://images.invalid/alpha/{i}.png" for i in range(3)]
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert record["spend"] == pytest.approx(3 * IMAGE_PRICE, rel=1e-9)
    async with client(gateway, base=PREFIX) as sdk:
        flagged = await sdk.moderations.create(model="mod", input=["fine", "also fine"])
    assert len(flagged.results) == 2 and upstream.seen[-1].body["model"] == "mod-upstream"


async def test_health_lists_models_rather_than_pay_for_audio(gateway: Gateway, media: MediaUpstream,
                                                             http: aiohttp.ClientSession) -> None:
    calls, uploads = len(media.calls), len(media.uploads)
    for group in ("whisper", "tts"):
        async with http.get(f"{gateway.url}/health", params={"model": group}, headers=ADMIN) as r:
            body = await r.json()
        assert r.status == 200 and len(body["healthy_endpoints"]) == 1, body
    assert (len(media.calls), len(media.uploads)) == (calls, uploads)


def test_nothing_above_went_to_the_log_as_a_traceback(gateway: Gateway) -> None:
    assert "Traceback" not in gateway.log()
