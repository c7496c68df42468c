"""The hot path: one request in, one upstream request out, the answer relayed.

Read top to bottom: parse and check the body, route the model, rewrite
`model`, send with the deployment's own key, then either relay the SSE
stream as it arrives (never decoded; see gateway/stream_usage.py) or hand
back the JSON body as received (never parsed). However the request ends, it
is settled once (`_settle`), before the last bytes of its answer go out. A
client that goes away cancels this handler (the server runs with handler
cancellation), which closes the upstream response and so frees its
connection at once; it is settled as 499 and charged for what it was sent.

A route speaks OpenAI's API or Anthropic's Messages API (`inbound`, gateway/protocols.py), and so does
each deployment upstream; the two meet in `_forward`, the one place that decides what to do when they
differ: a Crossing (gateway/crossing.py) translates the request there, and its answer on the way back,
the one case where a stream is decoded event by event. What differs between the two APIs on the way in
(the body's checks, what is reserved, the error shape) is chosen once per route, in `__init__`; on the
way back, by the deployment's API.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from multidict import istr

from gateway import __version__, batch, mock, mock_request, timeouts
from gateway.access import check_model_access
from gateway.access_log import AccessLog
from gateway.admission import pending, run_alone
from gateway.anthropic import errors as anthropic_errors
from gateway.anthropic import requests as anthropic_requests
from gateway.anthropic.usage import MessagesMeter
from gateway.anthropic.usage import from_body as anthropic_usage
from gateway.bearer import TokenUnavailable
from gateway.context import Ctx, IPNetwork
from gateway.cors import Cors
from gateway.crossing import Crossing, ResponsesToChat, StreamTranslator, ToChat, TranslatedMeter, crossing
from gateway.errors import OPENAI_ERRORS, ApiError, ErrorShape, bad_request, retry_cannot_help, upstream_error
from gateway.image_prices import read_ask
from gateway.limits.deployments import DeploymentLimits
from gateway.plugin import Chain
from gateway.pricing import Pricing
from gateway.protocols import Api, inbound
from gateway.responses_errors import RESPONSES_ERRORS
from gateway.responses_store import ResponseRoutes, response_id
from gateway.router import MIN_LIMITED, CoolingDown, Deployment, Route, Router
from gateway.settlement import CLIENT_LEFT, Settlement
from gateway.stream_usage import StreamMeter
from gateway.translate import dialect_for
from gateway.upstream_http import CertificateUnverified, Response, UpstreamUnreachable
from gateway.usage import Usage, estimate, from_json_body

log = logging.getLogger("gateway")

MAX_REQUEST_MB = web.AppKey("max_request_mb", float)

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# A stream's header names as istr, made once: aiohttp's CIMultiDict keeps a case-folded copy of each
# plain str name, and another once the headers are written, for as long as the stream is open.
HEADER_NAMES: dict[str, istr] = {}
MAX_HEADER_NAMES = 1024  # names are the gateway's, its plugins' and the upstreams': past this, not cached
# Hop-by-hop and framing headers belong to each connection; everything else the
# upstream said is relayed under `llm_provider-`, as LiteLLM does.
NOT_RELAYED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
                         "date", "server", "content-type", "set-cookie", "alt-svc", "via"})
# What a plugin that needs_output gets of a long stream: enough for any chat answer a log would keep.
MAX_OUTPUT_BYTES = 1 << 20
REQUIRED_FIELD = {"chat/completions": "messages", "completions": "prompt", "embeddings": "input",
                  "moderations": "input", "images/generations": "prompt"}
# Answers that are not text: with no usage in them, none is made up from their size.
NOT_TEXT = frozenset({"moderations", "images/generations"})
NO_USAGE = Usage()
MAX_ID_HEAD = 8192  # a Responses stream's id is in its first event; past this much, none is looked for
CHAT_STREAM_END = b"data: [DONE]\n\n"
COUNT_TOKENS = anthropic_requests.COUNT_TOKENS  # free: its answer is a count, never charged


class InFlight:
    """Requests being served by this process, shared by every endpoint; `limit` None for no cap."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int | None) -> None:
        self.count = 0
        self.limit = limit


IN_FLIGHT = web.AppKey("in_flight", InFlight)

OVERLOADED = ApiError(503, "Proxy overloaded — retry with backoff", "service_unavailable", None, "503",
                      headers={"retry-after": "1"})


class ProxyEndpoint:
    __slots__ = ("endpoint", "router", "limits", "chain", "trusted", "header_prefix", "access_log", "pricing",
                 "in_flight", "chain_needs_usage", "model_in_path", "names", "cors", "text", "images",
                 "default_model", "inbound", "errors", "check", "estimate", "body_usage", "responses")

    def __init__(self, endpoint: str, router: Router, limits: DeploymentLimits, chain: Chain,
                 trusted: tuple[IPNetwork, ...], header_prefix: str, access_log: AccessLog | None,
                 pricing: Pricing, in_flight: InFlight, model_in_path: bool = False, cors: Cors | None = None,
                 moderation_model: str | None = None, responses: ResponseRoutes | None = None) -> None:
        self.cors = cors
        self.responses = responses  # /v1/responses: which deployment holds each stored answer
        self.names = HeaderNames.under(header_prefix)
        # Azure's routes (/openai/deployments/{model}/...) name the model in the path, and it wins.
        self.model_in_path = model_in_path
        self.in_flight = in_flight
        self.access_log = access_log
        self.pricing = pricing
        self.endpoint = endpoint
        self.text = endpoint not in NOT_TEXT
        self.images = endpoint == "images/generations"
        # /moderations may name no model (OpenAI picks one): general_settings.moderation_model, else the
        # first group of mode `moderation`, else OpenAI's default when some deployment serves it.
        self.default_model = default_moderation_model(router, moderation_model) if endpoint == "moderations" \
            else None
        self.router = router
        self.limits = limits
        self.chain = chain
        self.chain_needs_usage = chain.needs_usage
        self.trusted = trusted
        self.header_prefix = header_prefix
        self.inbound = inbound(endpoint)
        anthropic = self.inbound is Api.ANTHROPIC
        self.errors: ErrorShape = anthropic_errors.ANTHROPIC_ERRORS if anthropic else \
            RESPONSES_ERRORS if self.inbound is Api.RESPONSES else OPENAI_ERRORS
        self.check = anthropic_requests.check_body if anthropic else \
            check_responses_body if self.inbound is Api.RESPONSES else check_body
        self.estimate: Callable[[dict[str, Any], int], Usage] = anthropic_requests.estimate if anthropic \
            else estimate
        self.body_usage: Callable[[bytes], Usage | None] = anthropic_usage if anthropic else from_json_body
        if endpoint == COUNT_TOKENS:
            self.estimate, self.body_usage = no_estimate, no_usage

    @property
    def needs_usage(self) -> bool:
        # A deployment's tpm is settled with real usage, so usage is read for it as for the plugins;
        # deployments come and go at runtime (gateway.catalog), so the router is asked each time.
        return self.chain_needs_usage or self.router.has_tpm

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # One coroutine for the whole request (no inner helper): a stream holds its frame while open.
        in_flight = self.in_flight
        if in_flight.limit is not None and in_flight.count >= in_flight.limit:
            # Shed load before doing any work for it: the process stays responsive for the rest.
            return self.errors.response(OVERLOADED)
        in_flight.count += 1
        try:
            ctx = Ctx(request, self.endpoint, self.trusted, len(self.chain.plugins))
            response: web.StreamResponse | None = None
            try:
                try:
                    response = await self._serve(ctx)
                except ApiError as error:
                    ctx.error = error
                    headers = self._headers(ctx)
                    if retry_cannot_help(error):
                        headers["x-should-retry"] = "false"
                    response = self.errors.response(error, headers, ctx.request_id)
                except asyncio.CancelledError:
                    ctx.client_left = not ctx.whole
                    raise
                except Exception:
                    log.exception("unhandled error serving %s", ctx.request_id)
                    ctx.error = ApiError(500, f"internal gateway error (request {ctx.request_id})",
                                         "internal_server_error")
                    if ctx.response is None:
                        response = self.errors.response(ctx.error, self._headers(ctx), ctx.request_id)
                    else:
                        abort_connection(request)  # the answer had started: no second one, and no made-up end
            finally:
                self._settle(ctx, response)
            if response is None or ctx.client_left:
                # Nothing more is written: aiohttp's own write_eof finds the transport closing.
                return response or ctx.response or web.StreamResponse()
            try:
                if not response.prepared:
                    await response.prepare(request)
                await response.write_eof()
            except ConnectionError:
                pass  # the client left with all but the end of the body: settled already as answered
            return response
        finally:
            in_flight.count -= 1

    def _settle(self, ctx: Ctx, response: web.StreamResponse | None) -> None:
        """The request's one settlement: usage (the upstream's, else an estimate), cost, status."""
        ended = ctx.ended = time.perf_counter()
        if ctx.client_left:
            status = CLIENT_LEFT
        elif ctx.response is not None:
            status = ctx.response.status
        else:
            status = response.status if response is not None else 500
        ctx.status = status
        meter = ctx.meter
        if ctx.usage is None and self.needs_usage:
            if meter is not None:
                ctx.usage = meter.usage(ctx.body or {})
            elif ctx.client_left and ctx.sent_at is not None:
                ctx.usage = self.estimate(ctx.body or {}, 0)  # left before any answer: the prompt was read
            if ctx.usage is not None and ctx.deployment is not None:
                price = self.pricing.price(ctx.deployment, ctx.upstream_model or "")
                ctx.cost = price.cost(ctx.usage, read_ask(ctx.body or {}) if self.images else None)
        usage, cost = ctx.usage, ctx.cost
        if meter is not None:
            ctx.output = meter.output()
            if ctx.error is None:
                ctx.error = meter.failure()  # an `event: error` ended the stream, Anthropic's or a translator's
        settled = Settlement(status, usage, cost, ctx.error, ctx.client_left,
                                              ctx.response is not None, meter.sent if meter is not None else 0,
                                              ended)
        if usage is not None and ctx.deployment is not None:
            ctx.deployment.record_usage(usage.total_tokens, ctx.started_wall)
        if ctx.admission is not None:
            self._release(ctx, float(usage.total_tokens) if usage is not None else 0.0)
        self.chain.on_settle(ctx, settled)
        if self.access_log is not None:
            self.access_log.record(ctx, settled)

    async def _serve(self, ctx: Ctx) -> web.StreamResponse:
        body = ctx.body = await read_json(ctx.request)
        if self.model_in_path:
            body["model"] = ctx.request.match_info["model"]
        elif self.default_model is not None and body.get("model") is None:
            body["model"] = self.default_model
        self.check(self.endpoint, body)
        if "," in body["model"] and self.endpoint == "chat/completions":
            return await batch.serve(self, ctx, body)
        asked = timeouts.asked(ctx.request.headers, body)
        ctx.requested_model = body["model"]
        if self.inbound is Api.ANTHROPIC:
            anthropic_requests.check_headers(ctx.request.headers)
        answer = await self.chain.on_request(ctx)
        if answer is not None:
            return answer
        ctx.stored = self.responses is not None and body.get("store") is not False
        if self.responses is not None and isinstance(body.get("previous_response_id"), str):
            ctx.pinned = await self._holder(body["previous_response_id"], ctx.requested_model)
        route = await self._first_route(ctx, ctx.requested_model)  # a plugin may have rewritten the model
        ctx.mock = mock_request.take(body, route.group)
        ctx.deployment = route.deployment
        ctx.model_group = route.group
        ctx.upstream_model = route.upstream_model
        stream = ctx.stream = body.get("stream") is True
        # Anthropic's streams report usage unasked: only OpenAI's need stream_options.include_usage.
        strip_usage = stream and self.needs_usage and self.inbound is Api.OPENAI and not _asked_for_usage(body)
        if strip_usage:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return await self._forward_with_retries(ctx, route, body, stream, strip_usage, asked,
                                                request_fallbacks(ctx, body, self.router))

    async def _first_route(self, ctx: Ctx, requested: str) -> Route:
        """A deployment of the group; when none is available, one of the group's fallbacks."""
        try:
            route = await self._route(ctx, requested)
        except CoolingDown as exc:
            for target in self.router.fallbacks.get(exc.group, ()):
                try:
                    route = await self._route(ctx, target)
                except CoolingDown:
                    continue
                if route is not None:
                    return route
            # A caller over its limits or budget hears that first, as when the plugins took them.
            await run_alone(ctx, pending(ctx))
            raise self._unavailable(exc) from None
        if route is None:
            await run_alone(ctx, pending(ctx))
            raise model_not_found(requested, self.endpoint)
        return route

    async def _route(self, ctx: Ctx, group: str, tried: set[str] | frozenset[str] = frozenset()) -> Route | None:
        """router.resolve, and, for a deployment with rpm/tpm, its share taken: one that is full is
        passed over (the router learns it) for the next. Costs nothing for deployments without."""
        router = self.router
        for _ in range(len(router.deployments) + 1):
            route = ctx.pinned if ctx.pinned is not None and ctx.pinned.group == router.aliases.get(group, group) \
                else router.resolve(group, tried)
            if route is None:
                return route
            claims = pending(ctx)
            if route.deployment.limits is None:
                if claims:
                    await self.limits.admit_with(ctx, claims, None, 0.0)
                return route
            prompt_tokens, max_tokens = ctx.reserved_tokens()
            # The plugins' claims go with the first deployment's limits, in one round trip.
            admission = await self.limits.admit_with(ctx, claims, route.deployment, float(prompt_tokens + max_tokens))
            if admission is not None:
                ctx.admission = admission
                return route
        # Each full deployment is left out for a while; only a very slow limiter gets here.
        raise CoolingDown(group, MIN_LIMITED, at_limit=True)

    async def _holder(self, response: str, requested: str) -> Route:
        """The deployment that holds an earlier response, which a request continuing it must go to (whether or
        not it is cooling down: no other has the conversation)."""
        assert self.responses is not None
        held_by = await self.responses.deployment_of(response)
        deployment = self.router.by_id.get(held_by) if held_by is not None else None
        if deployment is None:
            raise ApiError(404, f"Previous response with id '{response}' not found: this gateway does not know "
                           "which deployment holds it (it was made elsewhere, with store: false, or by a "
                           "deployment that speaks chat completions, whose answers are not stored)",
                           "invalid_request_error", "previous_response_id")
        for candidate, upstream_model in self.router.candidates(requested):
            if candidate is deployment:
                return Route(self.router.aliases.get(requested, requested), deployment, upstream_model)
        raise bad_request(f"previous_response_id {response!r} is held by a deployment of model "
                          f"{deployment.group!r}; continue it with that model", "previous_response_id")

    def _release(self, ctx: Ctx, used: float) -> None:
        """What the request held of its deployment's rpm/tpm is settled with the tokens it used."""
        admission, ctx.admission = ctx.admission, None
        if admission is not None:
            self.limits.settle(admission, used)

    def _unavailable(self, exc: CoolingDown) -> ApiError:
        wait = max(1, math.ceil(exc.retry_after))
        if exc.at_limit:
            # LiteLLM's words for a group whose deployments are all at their rpm/tpm.
            return ApiError(429, f"No deployments available for selected model, Try again in {wait} seconds. "
                            f"Passed model={exc.group}. Every deployment is at its rpm/tpm limit.",
                            "rate_limit_error", None, "429",
                            headers={"retry-after": str(wait), **self._group_limits(exc.group)})
        status = self.router.cooldown_status
        return ApiError(status, f"No deployments available for model {exc.group!r}: all are cooling down after "
                        f"failures. Retry after {wait}s.",
                        "rate_limit_error" if status == 429 else "service_unavailable",
                        headers={"retry-after": str(wait)})

    def _group_limits(self, group: str) -> dict[str, str]:
        """What the whole group admits a minute, none of it left."""
        headers = {}
        members = self.router.groups.get(group, [])
        for what, per_deployment in (("requests", [d.rpm for d in members]), ("tokens", [d.tpm for d in members])):
            if all(limit is not None for limit in per_deployment):
                headers[f"x-ratelimit-limit-{what}"] = str(sum(limit or 0 for limit in per_deployment))
                headers[f"x-ratelimit-remaining-{what}"] = "0"
        return headers

    async def _forward_with_retries(self, ctx: Ctx, route: Route, body: dict[str, Any], stream: bool,
                                    strip_usage: bool, asked: timeouts.Asked | None,
                                    asked_fallbacks: list[Fallback] | None = None) -> web.StreamResponse:
        """Retries within the group, then its fallbacks, while nothing has reached the client."""
        router = self.router
        tried: set[str] = set()
        plan = [Fallback(route.group)]  # a list: it lives as long as the stream, and a deque is 600 bytes
        fallen_back = False
        failure: UpstreamFailure | None = None
        current: Route | None = route
        sent = body
        while plan:
            group, overrides = plan.pop(0)
            if overrides:  # a client-side fallback with its own parameters (LiteLLM: they update the call's)
                sent = {**sent, **overrides}
            attempt = 0
            while True:
                if current is None:
                    try:
                        current = await self._route(ctx, group, tried)
                    except CoolingDown:
                        current = None
                    if current is None:
                        break
                if attempt == 0:
                    # The group's first deployment decides how often the group is retried (LiteLLM's
                    # litellm_params.num_retries, else the router's).
                    ctx.max_retries = current.deployment.num_retries
                else:
                    ctx.retries += 1
                    await asyncio.sleep(min(router.retry_after or 0.05 * 2 ** attempt, 2.0))
                ctx.deployment, ctx.model_group, ctx.upstream_model = current.deployment, current.group, \
                    current.upstream_model
                tried.add(current.deployment.id)
                try:
                    response = await self._forward(ctx, current, sent, stream, strip_usage, asked)
                except UpstreamFailure as exc:
                    failure = exc
                    self._release(ctx, 0.0)  # the request counts; it used no tokens there
                    await router.record_failure(current.deployment, exc.retry_after)
                    current = None
                    attempt += 1
                    if exc.kind is not None or not exc.retryable or attempt > ctx.max_retries:
                        break
                    continue
                except Untranslatable as exc:
                    # Nothing was sent, and the deployment is not at fault: one of the group that speaks
                    # the caller's API takes the request, if there is one; else the refusal is the answer.
                    self._release(ctx, 0.0)
                    if not router.speaks(group, self.inbound, tried):
                        raise exc.error from None
                    current = None
                    continue
                router.record_success(current.deployment)
                return response
            if failure is not None and not fallen_back:
                special = {"context_window": router.context_window_fallbacks,
                           "content_policy": router.content_policy_fallbacks}.get(failure.kind or "", {})
                targets: list[str] | list[Fallback] | None = special.get(group) if failure.kind else None
                if targets is None and failure.retryable:
                    targets = asked_fallbacks if asked_fallbacks is not None else router.fallbacks.get(group)
                if targets:
                    plan.extend(t if isinstance(t, Fallback) else Fallback(t) for t in targets)
                    fallen_back = True
                    ctx.fallbacks = len(targets)
            if failure is not None and not failure.retryable and not plan:
                break
        assert failure is not None
        ctx.error = failure.error
        return self.errors.response(failure.error, self._headers(ctx), ctx.request_id)

    async def _forward(self, ctx: Ctx, route: Route, body: dict[str, Any], stream: bool,
                       strip_usage: bool, asked: timeouts.Asked | None) -> web.StreamResponse:
        """One attempt at one deployment. Until the upstream answers well, a failure is raised as
        UpstreamFailure so that another attempt can be made; after that, the answer is the client's."""
        deployment = route.deployment
        requested = ctx.requested_model
        body["model"] = route.upstream_model
        limit = timeouts.for_attempt(deployment, stream, asked)
        ctx.timeout_s = limit.total if limit.total is not None else limit.connect
        if ctx.mock is not None:
            failed = ctx.mock.failure(route.group, route.upstream_model)
            if failed is not None:
                raise UpstreamFailure(failed[0], True, failed[1])
            if ctx.mock.response is not None:
                if self.endpoint == COUNT_TOKENS:
                    return self._count_here(ctx, body)
                return await self._answer_mock(ctx, route, body, strip_usage, ctx.mock.response)
        speaks = deployment.protocol
        if self.inbound is Api.RESPONSES and deployment.serves_responses:
            speaks = Api.RESPONSES
        if speaks is not self.inbound and self.endpoint == COUNT_TOKENS:
            return self._count_here(ctx, body)
        if deployment.provider.is_mock:
            return await self._answer_mock(ctx, route, body, strip_usage)
        across: Crossing | None = None
        if speaks is not self.inbound:
            try:
                across = crossing(self.endpoint, self.inbound, deployment, body, ctx.request.headers,
                                  _asked_for_usage(body) and not strip_usage)
            except ApiError as refused:
                raise Untranslatable(refused) from None
        deployment.in_flight += 1
        ctx.sent_at = time.perf_counter()
        try:
            if across is not None:
                path, payload, lines = across.path, across.payload(), across.headers
            elif speaks is not Api.ANTHROPIC:
                path, payload, lines = self.endpoint, orjson.dumps(body), b""
            else:
                path, payload, lines = (self.endpoint, orjson.dumps(body),
                                        anthropic_requests.upstream_headers(ctx.request.headers))
            if deployment.shape is not None:  # a cloud's URL, body and token (gateway/upstream_shape.py)
                path, payload, lines = await deployment.shape.prepare(path, payload, lines, route.upstream_model)
            upstream = await deployment.pool.post(deployment.endpoint, path, payload, limit, lines)
            try:
                ctx.upstream_headers_at = time.perf_counter()
                if upstream.status >= 400:
                    raw = await upstream.read()
                    if across is not None:
                        error = across.error(upstream.status, raw)
                    else:
                        error = upstream_error(upstream.status, raw) if speaks is not Api.ANTHROPIC else \
                            anthropic_errors.from_upstream(upstream.status, raw)
                    wait = retry_after_seconds(upstream.header(b"retry-after"))
                    if upstream.status == 429 and wait is None:
                        wait = self.router.cooldown_time  # rate limited upstream: let it rest either way
                    raise UpstreamFailure(error, upstream.status == 429 or upstream.status >= 500, wait)
                if across is not None and across.stream:
                    relay = self._relay(ctx, upstream.status, self._headers(ctx, upstream), upstream.chunks(),
                                        False, requested, deployment, across.translator())
                    upstream.raw_headers = []
                    return await relay
                if stream or upstream.content_type == "text/event-stream":
                    sse = upstream.content_type == "text/event-stream"
                    chunks = upstream.chunks()
                    if speaks is Api.RESPONSES and ctx.stored:
                        chunks = self._remembering(chunks, deployment)
                    relay = self._relay(ctx, upstream.status, self._headers(ctx, upstream), chunks,
                                        strip_usage and sse, requested, deployment)
                    upstream.raw_headers = []  # relayed now: not held for as long as the stream lasts
                    return await relay
                payload = await upstream.read()
            finally:
                upstream.release()
            if speaks is Api.RESPONSES and ctx.stored:
                self._remember(payload, deployment)
            ctx.first_byte_at = time.perf_counter()
            deployment.record_latency(ctx.first_byte_at - ctx.sent_at)
            if across is not None:
                return self._translated_answer(ctx, body, across, payload, upstream)
            return self._json_answer(ctx, body, payload, upstream.status, upstream,
                                     upstream.header(b"content-type") or "application/json")
        except CertificateUnverified as exc:
            raise UpstreamFailure(ApiError(502, f"upstream {deployment.api_base} for model {requested!r} presented "
                                           f"a TLS certificate that could not be verified ({exc.certificate_error}); "
                                           "trust its CA with `ssl_verify: <ca bundle path>`, or turn verification "
                                           "off with `ssl_verify: false`", "api_connection_error"),
                                  True, None) from None
        except TokenUnavailable as exc:
            raise UpstreamFailure(ApiError(502, f"no access token for upstream {deployment.api_base} for model "
                                           f"{requested!r}: {exc}", "api_connection_error"), True, None) from None
        except UpstreamUnreachable as exc:
            raise UpstreamFailure(ApiError(502, f"upstream {deployment.api_base} for model {requested!r} is "
                                           f"unreachable: {exc}", "api_connection_error"),
                                  True, None) from None
        except TimeoutError:
            raise UpstreamFailure(ApiError(504, f"upstream {deployment.api_base} for model {requested!r} did not "
                                           "answer in time", "timeout_error"), True, None) from None
        finally:
            deployment.in_flight -= 1

    def _remember(self, head: bytes, deployment: Deployment) -> bool:
        """A stored response (native, `store` not false) is routed back to its deployment later. False when
        `head` holds no id (yet)."""
        found = response_id(head)
        if found is not None and self.responses is not None:
            self.responses.remember(found, deployment.id)
        return found is not None

    async def _remembering(self, chunks: AsyncIterator[bytes], deployment: Deployment) -> AsyncIterator[bytes]:
        """A Responses stream as it comes, its id read from its first event (response.created), however the
        reads cut it. Only these streams pay for the extra step."""
        head = b""
        async for chunk in chunks:
            yield chunk
            head += chunk
            if self._remember(head, deployment) or len(head) > MAX_ID_HEAD:
                break
        async for chunk in chunks:
            yield chunk

    def _count_here(self, ctx: Ctx, body: dict[str, Any]) -> web.StreamResponse:
        """count_tokens for a deployment that does not count them (one that speaks OpenAI's API, or a mocked
        answer): the gateway's own estimate, never charged."""
        ctx.usage = NO_USAGE
        payload = orjson.dumps({"input_tokens": anthropic_requests.prompt_tokens(body)})
        return self._json_answer(ctx, body, payload, 200, None, "application/json")

    def _translated_answer(self, ctx: Ctx, body: dict[str, Any], across: Crossing, payload: bytes,
                           upstream: Response | None) -> web.Response:
        """A JSON answer in the caller's API, charged with the usage the upstream reported in it, else an
        estimate from the caller's prompt and the answer. One the translation cannot read is the upstream's
        failure: another deployment may answer better."""
        try:
            translated = across.answer(payload)
        except ApiError as error:
            raise UpstreamFailure(error, True, None) from None
        if self.needs_usage:
            ctx.usage = translated.usage or self.estimate(body, len(translated.body))
        return self._json_answer(ctx, body, translated.body, 200, upstream, "application/json")

    async def _answer_mock(self, ctx: Ctx, route: Route, body: dict[str, Any],
                           strip_usage: bool, text: str | None = None) -> web.StreamResponse:
        """The built-in mock answers as an OpenAI-compatible upstream would, and its answer takes the same way
        back: on /v1/messages, through the translation, as an OpenAI-compatible deployment's does."""
        ctx.sent_at = None  # no upstream call was made on this attempt
        deployment = route.deployment
        if self.inbound is not Api.OPENAI:
            across: ToChat | ResponsesToChat = ToChat(body, dialect_for(deployment.provider.name)) \
                if self.inbound is Api.ANTHROPIC else ResponsesToChat(body, dialect_for(deployment.provider.name))
            answer = mock.answer(deployment, "chat/completions", across.chat_body(), route.upstream_model, text)
            ctx.first_byte_at = time.perf_counter()
            if answer.events is None:
                assert answer.body is not None
                return self._translated_answer(ctx, body, across, answer.body, None)
            return await self._relay(ctx, 200, self._headers(ctx), _replay(answer.events), False,
                                     ctx.requested_model, deployment, across.translator())
        answer = mock.answer(deployment, self.endpoint, body, route.upstream_model, text)
        ctx.first_byte_at = time.perf_counter()
        if answer.events is None:
            assert answer.body is not None
            ctx.usage = answer.usage if self.needs_usage else None
            return self._json_answer(ctx, body, answer.body, 200, None, "application/json")
        return await self._relay(ctx, 200, self._headers(ctx), _replay(answer.events), strip_usage,
                                 ctx.requested_model, deployment)

    def _json_answer(self, ctx: Ctx, body: dict[str, Any], payload: bytes, status: int,
                     upstream: Response | None, content_type: str) -> web.Response:
        if self.needs_usage and ctx.usage is None:
            ctx.usage = self.body_usage(payload) or (self.estimate(body, len(payload)) if self.text else NO_USAGE)
        if ctx.usage is not None and ctx.deployment is not None:
            price = self.pricing.price(ctx.deployment, ctx.upstream_model or "")
            ctx.cost = price.cost(ctx.usage, read_ask(body) if self.images else None)
        if self.chain.needs_output:
            ctx.output = payload
        merged = self._headers(ctx, upstream)  # after usage and cost are known: plugins report them
        merged["Content-Type"] = content_type
        return web.Response(status=status, body=payload, headers=merged)

    async def _relay(self, ctx: Ctx, status: int, headers: dict[str, str], chunks: AsyncIterator[bytes],
                     strip_usage: bool, requested: str | None, deployment: Deployment,
                     translator: StreamTranslator | None = None) -> web.StreamResponse:
        """Relay a stream as it arrives (through `translator` when it is in the other API). Once the headers
        are out, the answer is the client's: an upstream failure becomes a last error event; a client that
        left ends the relay quietly."""
        names = HEADER_NAMES
        response = web.StreamResponse(status=status, headers={names.get(name) or _header_name(name): value
                                                              for name, value in {**headers, **SSE_HEADERS}.items()})
        del headers  # copied into the response; this frame lives as long as the stream
        try:
            await response.prepare(ctx.request)
        except ConnectionError:
            ctx.client_left = True
            return response
        ctx.response = response
        keep = MAX_OUTPUT_BYTES if self.chain.needs_output else 0
        if translator is not None:
            meter: StreamMeter = TranslatedMeter(translator, keep, self.estimate, self.inbound is Api.RESPONSES)
        elif deployment.protocol is Api.OPENAI:
            meter = StreamMeter(strip_usage and self.needs_usage, self.needs_usage, keep)
        else:
            meter = MessagesMeter(self.needs_usage, keep)
        ctx.meter = meter
        feed = meter.feed
        # A translated chat stream is whole at its `[DONE]`, which the translator writes at the upstream's last
        # event, before the upstream's end of stream: a client that leaves after it has had the whole answer.
        ends = CHAT_STREAM_END if translator is not None and self.inbound is Api.OPENAI else None
        try:
            async for chunk in chunks:
                if ctx.first_byte_at is None:
                    ctx.first_byte_at = time.perf_counter()
                    if ctx.sent_at is not None:
                        deployment.record_latency(ctx.first_byte_at - ctx.sent_at)
                out = feed(chunk)
                if out:
                    # _write, inlined: a coroutine per chunk is measurable on the hot path.
                    try:
                        await response.write(out)
                    except ConnectionError:
                        ctx.client_left = True
                        return response
                    meter.delivered(out)
                    if ends is not None and out.endswith(ends):
                        ctx.whole = True
        except (UpstreamUnreachable, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                error = ApiError(504, f"upstream {deployment.api_base} for model {requested!r} stalled: no data "
                                 "within the stream timeout", "timeout_error")
            else:
                error = ApiError(502, f"upstream {deployment.api_base} for model {requested!r} broke off the "
                                 f"stream: {exc}", "api_connection_error")
            ctx.error = error
            # The client learns of it as a last event; never as a made-up end.
            owed = meter.broken()
            rest = owed + self.errors.stream_event(error, ctx.request_id, meter.sent_tail() + owed)
        else:
            rest = meter.flush()
        if rest:
            await _write(ctx, response, meter, rest)
        return response

    def _headers(self, ctx: Ctx, upstream: Response | None = None) -> dict[str, str]:
        """Request id, tracking headers (the prefix is `X-Olla-` behind Olla), then the plugins' own.
        x-ratelimit-*: the upstream's own, overridden by the deployment's rpm/tpm, overridden by the
        caller's limits (the rate_limit plugin's). A native Anthropic answer's request-id and
        anthropic-ratelimit-* go out under their own names too; any other answer to an Anthropic client
        has the gateway's request id as its request-id."""
        names = self.names
        headers = {"X-Request-ID": ctx.request_id, names.call_id: ctx.request_id, names.version: __version__}
        if self.inbound is Api.ANTHROPIC:
            headers["request-id"] = ctx.request_id  # a native upstream's own replaces it below
        if upstream is not None:
            # An Anthropic client reads Anthropic's own headers by their names (the SDK's `_request_id`).
            native = self.inbound is Api.ANTHROPIC and ctx.deployment is not None \
                and ctx.deployment.protocol is Api.ANTHROPIC
            for raw_name, raw_value in upstream.raw_headers:
                name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
                lower = name.lower()
                if lower not in NOT_RELAYED:
                    headers[f"llm_provider-{name}"] = value
                    if lower.startswith("x-ratelimit-"):
                        headers[lower] = value
                    elif native and (lower == "request-id" or lower.startswith("anthropic-ratelimit-")):
                        headers[lower] = value
        deployment = ctx.deployment
        if deployment is not None:
            if ctx.admission is not None:
                headers.update(ctx.admission.headers)
            headers[names.model_group] = ctx.model_group or ""
            headers[names.model_id] = deployment.id
            if deployment.api_base:
                headers[names.api_base] = deployment.api_base.split("?")[0]
            elapsed = ctx.elapsed_ms()
            headers[names.duration] = f"{elapsed:.3f}"
            # LiteLLM's: what routing did, and what the gateway itself added to the time to this answer.
            headers[names.retries] = str(ctx.retries)
            headers[names.fallbacks] = str(ctx.fallbacks)
            headers[names.max_retries] = str(ctx.max_retries)
            if ctx.timeout_s is not None:
                headers[names.timeout] = str(float(ctx.timeout_s))  # as LiteLLM prints it: "1.0", "0.001"
            if ctx.sent_at is not None:
                upstream_ms = ((ctx.upstream_headers_at or ctx.sent_at) - ctx.sent_at) * 1000
                headers[names.overhead] = f"{max(0.0, elapsed - upstream_ms):.3f}"
        if self.cors is not None and (origin := ctx.request.headers.get("Origin")) is not None:
            self.cors.mark_headers(origin, headers)
        self.chain.on_response_headers(ctx, headers)
        return headers


class HeaderNames(NamedTuple):
    """The tracking headers' names under the configured prefix, made once."""

    call_id: str
    version: str
    model_group: str
    model_id: str
    api_base: str
    duration: str
    retries: str
    fallbacks: str
    max_retries: str
    timeout: str
    overhead: str

    @classmethod
    def under(cls, prefix: str) -> HeaderNames:
        return cls(*(prefix + name for name in (
            "call-id", "version", "model-group", "model-id", "model-api-base", "response-duration-ms",
            "attempted-retries", "attempted-fallbacks", "max-retries", "timeout", "overhead-duration-ms")))


def _header_name(name: str) -> str:
    interned = HEADER_NAMES.get(name)
    if interned is None:
        interned = istr(name)
        if len(HEADER_NAMES) < MAX_HEADER_NAMES:
            HEADER_NAMES[name] = interned
    return interned


async def _write(ctx: Ctx, response: web.StreamResponse, meter: StreamMeter, data: bytes) -> bool:
    """False when the client is gone: nothing more is written to it."""
    try:
        await response.write(data)
    except ConnectionError:
        ctx.client_left = True
        return False
    meter.delivered(data)
    return True


def no_estimate(body: dict[str, Any], completion_chars: int) -> Usage:
    return NO_USAGE


def no_usage(payload: bytes) -> Usage:
    return NO_USAGE


async def _replay(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


def abort_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except (HttpProcessingError, RequestPayloadError) as exc:
        # A body that does not match its Content-Encoding, or a broken chunked body.
        raise bad_request(f"request body could not be read: {exc}", "request_body") from None
    except web.HTTPRequestEntityTooLarge:
        limit_mb = request.app[MAX_REQUEST_MB]
        raise ApiError(413, f"Request size is too large. Max size is {limit_mb:g} MB "
                       "(general_settings.max_request_size_mb)", "invalid_request_error",
                       "content-length", "request_too_large") from None
    if not raw:
        raise bad_request("request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Invalid JSON payload: {exc}", "request_body") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


class Fallback(NamedTuple):
    """A group to fall back to, and for a client-side fallback given as an object, the request
    parameters it sets in place of the request's own (`{"model": ..., "messages": [...]}`)."""

    group: str
    overrides: dict[str, Any] | None = None


def request_fallbacks(ctx: Ctx, body: dict[str, Any], router: Router) -> list[Fallback] | None:
    """LiteLLM's `fallbacks` in the request body: models to try, in order, when the one asked for
    fails, each a name or an object with a `model` and parameters of its own; they replace the
    configured ones, and the caller must be allowed each. Taken out of the body, which goes upstream."""
    if "fallbacks" not in body:
        return None
    asked = body.pop("fallbacks")
    if asked is None:
        return None
    if not isinstance(asked, list):
        raise bad_request(FALLBACKS_SHAPE, "fallbacks")
    found = []
    for entry in asked:
        if isinstance(entry, str) and entry:
            found.append(Fallback(entry))
        elif isinstance(entry, dict) and isinstance(entry.get("model"), str) and entry["model"]:
            overrides = {k: v for k, v in entry.items() if k != "model"}
            if "stream" in overrides and overrides["stream"] is not body.get("stream", False):
                raise bad_request("a fallback cannot change whether the answer streams", "fallbacks")
            found.append(Fallback(entry["model"], overrides))
        else:
            raise bad_request(FALLBACKS_SHAPE, "fallbacks")
    for fallback in found:
        if not router.knows(fallback.group):
            raise model_not_found(fallback.group, ctx.endpoint)
        if ctx.caller is not None:
            check_model_access(ctx.caller, fallback.group, router.aliases, router.access_groups)
    return found


FALLBACKS_SHAPE = "fallbacks must be a list of model names, or of objects with a `model` and the parameters to send it"


def check_responses_body(endpoint: str, body: dict[str, Any]) -> None:
    """/v1/responses: a model, and input as text or items; the rest is the deployment's to judge (or the
    translation's, for one that speaks chat completions)."""
    model = body.get("model")
    if model is None:
        raise bad_request("missing required parameter: 'model'", "model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' must be a non-empty string", "model")
    value = body.get("input")
    if value is not None and not isinstance(value, (str, list)):
        raise bad_request("'input' must be a string or an array of input items", "input")
    if "stream" in body and not isinstance(body["stream"], bool) and body["stream"] is not None:
        raise bad_request("'stream' must be a boolean", "stream")
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise bad_request("'previous_response_id' must be a response id", "previous_response_id")


def check_body(endpoint: str, body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is None:
        raise bad_request("missing required parameter: 'model'", "model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' must be a non-empty string", "model")
    field = REQUIRED_FIELD[endpoint]
    value = body.get(field)
    if value is None:
        raise bad_request(f"missing required parameter: '{field}'", field)
    if endpoint == "chat/completions":
        if not isinstance(value, list) or not value:
            raise bad_request("'messages' must be a non-empty array", "messages")
        for i, message in enumerate(value):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise bad_request(f"messages[{i}] must be an object with a string 'role'", f"messages[{i}]")
    elif endpoint == "images/generations":
        if not isinstance(value, str) or not value:
            raise bad_request("'prompt' must be a non-empty string", "prompt")
        count = body.get("n")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise bad_request("'n' must be a whole number of images, 1 or more", "n")
    elif not isinstance(value, (str, list)) or (isinstance(value, list) and not value):
        raise bad_request(f"'{field}' must be a string or a non-empty array", field)
    if "stream" in body and not isinstance(body["stream"], bool) and body["stream"] is not None:
        raise bad_request("'stream' must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", "stream_options")


class Untranslatable(Exception):
    """The request cannot be said in the API of the deployment it was routed to."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class UpstreamFailure(Exception):
    """An attempt that failed before anything reached the client."""

    def __init__(self, error: ApiError, retryable: bool, retry_after: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after
        self.kind = _failure_kind(error)


CONTEXT_WINDOW_WORDS = ("context_length_exceeded", "context length", "maximum context", "context window",
                        "too many tokens", "prompt is too long",
                        "input is too long")  # Bedrock's ValidationException: "Input is too long for requested model."
CONTENT_POLICY_WORDS = ("content_policy", "content_filter", "content policy", "safety system")


def _failure_kind(error: ApiError) -> str | None:
    if error.status != 400:
        return None
    text = f"{error.message} {error.code} {error.type}".lower()
    if any(w in text for w in CONTEXT_WINDOW_WORDS):
        return "context_window"
    if any(w in text for w in CONTENT_POLICY_WORDS):
        return "content_policy"
    return None


def retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


OPENAI_MODERATION_MODEL = "omni-moderation-latest"


def default_moderation_model(router: Router, configured: str | None) -> str | None:
    if configured:
        return configured
    for deployment in router.deployments:
        if deployment.mode == "moderation":
            return deployment.group
    return OPENAI_MODERATION_MODEL if router.knows(OPENAI_MODERATION_MODEL) else None


def _asked_for_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def model_not_found(model: str, endpoint: str = "models") -> ApiError:
    # LiteLLM's words; the status is 404, as OpenAI answers for a model it does not have.
    return ApiError(404, f"/{endpoint}: Invalid model name passed in model={model}. Call `/v1/models` to view "
                    "available models for your key.", "invalid_request_error", "model", "model_not_found")
