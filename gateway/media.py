"""Audio and rerank: the routes whose bodies or answers are not OpenAI's JSON-in, JSON-or-SSE-out.

- /audio/transcriptions and /audio/translations take a multipart upload. The form is read only up to
  its `model` field (gateway/multipart.py); then the request goes upstream with the deployment's key
  and that head (the model's name replaced by the deployment's), and the rest of the file follows as
  the client sends it: never held whole. With the client's Content-Length (adjusted for the new name)
  when it sent one, else chunked. An attempt may be retried on another deployment only while nothing
  past the head was read; once the file is flowing there is one attempt.
- /audio/speech takes JSON and answers audio bytes, relayed as the upstream sends them.
- /rerank (and /v2/rerank, LiteLLM's) takes Cohere's shape; it goes to Cohere's /v1/rerank or
  /v2/rerank (`cohere/`, as the route was /v1 or /v2), to Jina's /v1/rerank (`jina_ai/`), or to
  `{api_base}/rerank` of an OpenAI-compatible host (vLLM, llama.cpp's server: `hosted_vllm/`, `openai/`).
  Answers are relayed as received.

Each is priced as gateway/media_usage.py says, and settled once, as every proxied request is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from gateway import media_usage, multipart, timeouts
from gateway.access_log import AccessLog
from gateway.bearer import TokenUnavailable
from gateway.context import Ctx, IPNetwork
from gateway.cors import Cors
from gateway.errors import ApiError, bad_request, upstream_error
from gateway.limits.deployments import DeploymentLimits
from gateway.plugin import Chain
from gateway.pricing import Pricing
from gateway.protocols import API_NAMES, Api
from gateway.proxy import (
    InFlight,
    ProxyEndpoint,
    UpstreamFailure,
    abort_connection,
    no_estimate,
    no_usage,
    retry_after_seconds,
)
from gateway.router import CoolingDown, Deployment, Route, Router
from gateway.upstream_http import CertificateUnverified, Response, UpstreamUnreachable

log = logging.getLogger("gateway")

UPLOADS = frozenset({"audio/transcriptions", "audio/translations"})
MEDIA = ("audio/transcriptions", "audio/translations", "audio/speech", "rerank")
# How much of a form is read looking for its `model` field when a file comes first.
HEAD_LIMIT = 4 << 20
TAIL = 1 << 16  # of a streamed transcription, kept to read its usage from the last event
REQUIRED = {"audio/speech": "input", "rerank": "query"}
RERANK_ONLY = frozenset({"cohere", "jina_ai"})  # providers whose deployments serve /rerank alone


class MediaEndpoint(ProxyEndpoint):
    __slots__ = ("upload", "rerank_version", "max_bytes", "unmeasured")

    def __init__(self, endpoint: str, router: Router, limits: DeploymentLimits, chain: Chain,
                 trusted: tuple[IPNetwork, ...], header_prefix: str, access_log: AccessLog | None,
                 pricing: Pricing, in_flight: InFlight, cors: Cors | None = None, rerank_version: str = "v1",
                 max_bytes: int | None = None) -> None:
        super().__init__(endpoint, router, limits, chain, trusted, header_prefix, access_log, pricing, in_flight,
                         cors=cors)
        self.upload = endpoint in UPLOADS
        self.rerank_version = rerank_version
        self.max_bytes = max_bytes
        self.text = False
        self.check = check_body
        self.estimate, self.body_usage = no_estimate, no_usage
        self.unmeasured: set[str] = set()  # deployments already warned of answers without a duration

    async def _serve(self, ctx: Ctx) -> web.StreamResponse:
        if not self.upload:
            return await super()._serve(ctx)
        request = ctx.request
        content_type = request.headers.get("Content-Type", "")
        boundary = multipart.boundary_of(content_type)
        # A compressed upload is relayed as aiohttp inflates it: its length is not the client's.
        length = request.content_length if request.headers.get("Content-Encoding", "identity") == "identity" \
            else None
        if length is not None and self.max_bytes is not None and length > self.max_bytes:
            raise _too_large(self.max_bytes)
        try:
            head = await multipart.read_head(request.content.readany, boundary, HEAD_LIMIT)
        except (HttpProcessingError, RequestPayloadError) as exc:
            raise bad_request(f"request body could not be read: {exc}", "file") from None
        body = ctx.body = dict(head.fields)
        asked = timeouts.asked(request.headers, body)
        ctx.requested_model = head.model
        answer = await self.chain.on_request(ctx)
        if answer is not None:
            return answer
        route = await self._first_route(ctx, ctx.requested_model)
        ctx.stream = body.get("stream") == "true"
        upload = Upload(head, request, content_type, length, self.max_bytes)
        return await self._upload_with_retries(ctx, route, upload, asked)

    async def _upload_with_retries(self, ctx: Ctx, route: Route, upload: Upload,
                                   asked: timeouts.Asked | None) -> web.StreamResponse:
        """Other deployments of the group while no byte past the form's head was read; no fallbacks."""
        tried: set[str] = set()
        current = route
        ctx.max_retries = route.deployment.num_retries
        attempt = 0
        while True:
            ctx.deployment, ctx.model_group, ctx.upstream_model = current.deployment, current.group, \
                current.upstream_model
            tried.add(current.deployment.id)
            try:
                response = await self._upload(ctx, current, upload, asked)
            except UpstreamFailure as exc:
                self._release(ctx, 0.0)
                await self.router.record_failure(current.deployment, exc.retry_after)
                attempt += 1
                following: Route | None = None
                if exc.retryable and not upload.started and attempt <= ctx.max_retries:
                    try:
                        following = await self._route(ctx, current.group, tried)
                    except CoolingDown:
                        following = None
                if following is None:
                    ctx.error = exc.error
                    return self.errors.response(exc.error, self._headers(ctx), ctx.request_id)
                ctx.retries += 1
                current = following
                continue
            self.router.record_success(current.deployment)
            return response

    async def _upload(self, ctx: Ctx, route: Route, upload: Upload,
                      asked: timeouts.Asked | None) -> web.StreamResponse:
        deployment = route.deployment
        served(self.endpoint, deployment)
        prefix = upload.head.with_model(route.upstream_model)
        length = None if upload.length is None else upload.length + len(prefix) - len(upload.head.prefix)
        limit = timeouts.for_attempt(deployment, False, asked)
        ctx.timeout_s = limit.total if limit.total is not None else limit.connect
        deployment.in_flight += 1
        ctx.sent_at = time.perf_counter()
        try:
            path, lines = self.endpoint, b""
            if deployment.shape is not None:  # Azure's deployment path and token (gateway/upstream_shape.py)
                path, _, lines = await deployment.shape.prepare(path, b"", b"", route.upstream_model)
            try:
                upstream = await deployment.pool.post_streamed(deployment.endpoint, path, upload.content_type,
                                                               upload.chunks(prefix), length, limit, lines)
            except UploadBroken as exc:
                transport = ctx.request.transport
                ctx.client_left = transport is None or transport.is_closing()
                raise bad_request(f"the upload broke off: {exc}", "file") from None
            try:
                ctx.upstream_headers_at = time.perf_counter()
                if upstream.status >= 400:
                    raise await self._failure(upstream)
                price = self.pricing.price(deployment, route.upstream_model)
                if upstream.content_type == "text/event-stream":
                    tail = bytearray()
                    response = await self._relay_bytes(ctx, upstream, deployment, tail)
                    charge = media_usage.transcription_stream(price, bytes(tail))
                    ctx.usage, ctx.cost = charge.usage, charge.cost
                    return response
                payload = await upstream.read()
            finally:
                upstream.release()
            ctx.first_byte_at = time.perf_counter()
            deployment.record_latency(ctx.first_byte_at - ctx.sent_at)
            charge = media_usage.transcription(price, payload)
            if charge.seconds is None and price.cost_per_second and deployment.id not in self.unmeasured:
                self.unmeasured.add(deployment.id)
                log.warning("%s answer from deployment %s gave no duration (response_format text, srt or vtt?): "
                            "its seconds are not charged", self.endpoint, deployment.id[:12])
            ctx.usage, ctx.cost = charge.usage, charge.cost
            return self._answer(ctx, payload, upstream)
        except (CertificateUnverified, UpstreamUnreachable, TimeoutError, TokenUnavailable) as exc:
            raise _unreachable(deployment, ctx.requested_model, exc) from None
        finally:
            deployment.in_flight -= 1

    async def _forward(self, ctx: Ctx, route: Route, body: dict[str, Any], stream: bool,
                       strip_usage: bool, asked: timeouts.Asked | None) -> web.StreamResponse:
        """One attempt of /audio/speech or /rerank at one deployment."""
        deployment = route.deployment
        served(self.endpoint, deployment)
        body["model"] = route.upstream_model
        speech = self.endpoint == "audio/speech"
        limit = timeouts.for_attempt(deployment, speech, asked)  # audio goes on as long as bytes keep coming
        ctx.timeout_s = limit.total if limit.total is not None else limit.connect
        path = rerank_path(deployment, self.rerank_version) if self.endpoint == "rerank" else self.endpoint
        deployment.in_flight += 1
        ctx.sent_at = time.perf_counter()
        try:
            payload, lines = orjson.dumps(body), b""
            if deployment.shape is not None:
                path, payload, lines = await deployment.shape.prepare(path, payload, lines, route.upstream_model)
            upstream = await deployment.pool.post(deployment.endpoint, path, payload, limit, lines)
            try:
                ctx.upstream_headers_at = time.perf_counter()
                if upstream.status >= 400:
                    raise await self._failure(upstream)
                price = self.pricing.price(deployment, route.upstream_model)
                if speech:
                    # Charged for the text, whether or not the client stays for all of the audio.
                    charge = media_usage.speech(price, body["input"])
                    ctx.usage, ctx.cost = charge.usage, charge.cost
                    return await self._relay_bytes(ctx, upstream, deployment)
                payload = await upstream.read()
            finally:
                upstream.release()
            ctx.first_byte_at = time.perf_counter()
            deployment.record_latency(ctx.first_byte_at - ctx.sent_at)
            charge = media_usage.rerank(price, payload)
            ctx.usage, ctx.cost = charge.usage, charge.cost
            return self._answer(ctx, payload, upstream)
        except (CertificateUnverified, UpstreamUnreachable, TimeoutError, TokenUnavailable) as exc:
            raise _unreachable(deployment, ctx.requested_model, exc) from None
        finally:
            deployment.in_flight -= 1

    async def _failure(self, upstream: Response) -> UpstreamFailure:
        error = upstream_error(upstream.status, await upstream.read())
        wait = retry_after_seconds(upstream.header(b"retry-after"))
        if upstream.status == 429 and wait is None:
            wait = self.router.cooldown_time
        return UpstreamFailure(error, upstream.status == 429 or upstream.status >= 500, wait)

    def _answer(self, ctx: Ctx, payload: bytes, upstream: Response) -> web.Response:
        if self.chain.needs_output:
            ctx.output = payload
        headers = self._headers(ctx, upstream)
        headers["Content-Type"] = upstream.header(b"content-type") or "application/json"
        return web.Response(status=upstream.status, body=payload, headers=headers)

    async def _relay_bytes(self, ctx: Ctx, upstream: Response, deployment: Deployment,
                           tail: bytearray | None = None) -> web.StreamResponse:
        """The answer's bytes as they arrive. An upstream that breaks off after the headers are out
        breaks the client's connection too: a cut-short body, never a made-up end."""
        headers = self._headers(ctx, upstream)
        headers["Content-Type"] = upstream.header(b"content-type") or "application/octet-stream"
        response = web.StreamResponse(status=upstream.status, headers=headers)
        try:
            await response.prepare(ctx.request)
        except ConnectionError:
            ctx.client_left = True
            return response
        ctx.response = response
        try:
            async for chunk in upstream.chunks():
                if ctx.first_byte_at is None:
                    ctx.first_byte_at = time.perf_counter()
                    if ctx.sent_at is not None:
                        deployment.record_latency(ctx.first_byte_at - ctx.sent_at)
                if tail is not None:
                    tail += chunk
                    del tail[:-TAIL]
                try:
                    await response.write(chunk)
                except ConnectionError:
                    ctx.client_left = True
                    return response
        except (UpstreamUnreachable, TimeoutError) as exc:
            ctx.error = _unreachable(deployment, ctx.requested_model, exc).error
            abort_connection(ctx.request)
        return response


class UploadBroken(Exception):
    """The client's body could not be read to its end (it left, or its framing broke)."""


class Upload:
    """The client's upload: its head, read already, and the rest, read as it is relayed."""

    __slots__ = ("head", "request", "content_type", "length", "limit", "started")

    def __init__(self, head: multipart.Head, request: web.Request, content_type: str, length: int | None,
                 limit: int | None) -> None:
        self.head = head
        self.request = request
        self.content_type = content_type
        self.length = length
        self.limit = limit
        self.started = False  # bytes past the head were read: the request cannot be sent again

    async def chunks(self, prefix: bytes) -> AsyncGenerator[bytes, None]:
        yield prefix
        total = len(self.head.prefix)
        content = self.request.content
        while True:
            try:
                chunk = await content.readany()
            except (HttpProcessingError, RequestPayloadError, ConnectionError) as exc:
                raise UploadBroken(str(exc) or type(exc).__name__) from None
            if not chunk:
                return
            self.started = True
            total += len(chunk)
            if self.limit is not None and total > self.limit:
                raise _too_large(self.limit)
            yield chunk


def served(endpoint: str, deployment: Deployment) -> None:
    """Refused before anything is sent: a deployment that cannot serve the route."""
    if deployment.provider.is_mock:
        raise ApiError(400, f"/{endpoint}: the mock provider (deployment {deployment.id[:12]}) does not serve "
                       "this route", "invalid_request_error", "model")
    if deployment.protocol is not Api.OPENAI:
        raise ApiError(400, f"/{endpoint}: deployment {deployment.id[:12]} ({deployment.provider.name}/"
                       f"{deployment.model_template}) speaks {API_NAMES[deployment.protocol]}, which has no such "
                       "route", "invalid_request_error", "model")
    if endpoint != "rerank" and deployment.provider.name in RERANK_ONLY:
        raise ApiError(400, f"/{endpoint}: {deployment.provider.name}/ deployments serve /rerank only",
                       "invalid_request_error", "model")


def rerank_path(deployment: Deployment, version: str) -> str:
    """Cohere's API is under its root URL, by version; Jina's base already ends in /v1."""
    return f"{version}/rerank" if deployment.provider.name == "cohere" else "rerank"


def check_body(endpoint: str, body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is None:
        raise bad_request("missing required parameter: 'model'", "model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' must be a non-empty string", "model")
    field = REQUIRED[endpoint]
    value = body.get(field)
    if value is None:
        raise bad_request(f"missing required parameter: '{field}'", field)
    if not isinstance(value, str) or not value:
        raise bad_request(f"'{field}' must be a non-empty string", field)
    if endpoint == "rerank":
        documents = body.get("documents")
        if documents is None:
            raise bad_request("missing required parameter: 'documents'", "documents")
        if not isinstance(documents, list) or not documents:
            raise bad_request("'documents' must be a non-empty array of strings or objects", "documents")
        top_n = body.get("top_n")
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
            raise bad_request("'top_n' must be a whole number, 1 or more", "top_n")


def _unreachable(deployment: Deployment, requested: str | None, exc: Exception) -> UpstreamFailure:
    if isinstance(exc, CertificateUnverified):
        error = ApiError(502, f"upstream {deployment.api_base} for model {requested!r} presented a TLS certificate "
                         f"that could not be verified ({exc.certificate_error})", "api_connection_error")
    elif isinstance(exc, TokenUnavailable):
        error = ApiError(502, f"no access token for upstream {deployment.api_base} for model {requested!r}: {exc}",
                         "api_connection_error")
    elif isinstance(exc, TimeoutError):
        error = ApiError(504, f"upstream {deployment.api_base} for model {requested!r} did not answer in time",
                         "timeout_error")
    else:
        error = ApiError(502, f"upstream {deployment.api_base} for model {requested!r} is unreachable or broke "
                         f"off: {exc}", "api_connection_error")
    return UpstreamFailure(error, True, None)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request size is too large. Max size is {limit / 1048576:g} MB "
                    "(general_settings.max_request_size_mb)", "invalid_request_error", "file", "request_too_large")

