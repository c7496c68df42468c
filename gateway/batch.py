"""LiteLLM's batch completions: `"model": "gpt-4o,claude"` on /chat/completions sends the one request to
each model named and answers the list of their answers, in the order named (`fastest_response: true`: only
the first good answer, the other calls cancelled).

Each model is a call of its own, as in LiteLLM: its own request id (`<id>-<n>`), the whole plugin chain (auth,
model access, limits, budget), its own settlement and spend record. Every call is admitted before any is
sent, so a model the key may not use, an unknown model or a budget that does not fit turns the whole request
away and nothing reaches an upstream. A call that fails upstream stands in the list as its error envelope;
when every call fails, the first failure is the answer. A list cannot be streamed: `stream: true` is refused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import mock_request, timeouts
from gateway.context import Ctx
from gateway.errors import ApiError, bad_request
from gateway.router import Route

if TYPE_CHECKING:
    from gateway.proxy import Fallback, ProxyEndpoint

log = logging.getLogger("gateway")

FASTEST_HEADER = "fastest_response_batch_completion"


class Call:
    """One model's share of a batch: its own Ctx and body, admitted, then sent."""

    __slots__ = ("ctx", "body", "route", "asked", "fallbacks", "response", "admitted", "settled")

    def __init__(self, proxy: ProxyEndpoint, outer: Ctx, index: int, model: str, body: dict[str, Any]) -> None:
        ctx = self.ctx = Ctx(outer.request, proxy.endpoint, proxy.trusted, len(proxy.chain.plugins))
        ctx.request_id = f"{outer.request_id}-{index}"
        ctx.requested_model = model
        self.body = ctx.body = {**body, "model": model}
        self.route: Route | None = None
        self.asked: timeouts.Asked | None = None
        self.fallbacks: list[Fallback] | None = None
        self.response: web.StreamResponse | None = None
        self.admitted = False  # the chain ran for it: it must be settled
        self.settled = False

    async def admit(self, proxy: ProxyEndpoint) -> None:
        """The chain, then a deployment; a plugin's own answer stands as this call's answer."""
        from gateway.proxy import request_fallbacks

        ctx, body = self.ctx, self.body
        self.asked = timeouts.asked(ctx.request.headers, body)
        self.admitted = True
        answer = await proxy.chain.on_request(ctx)
        if answer is not None:
            self.response = answer
            return
        route = self.route = await proxy._first_route(ctx, body["model"])
        ctx.mock = mock_request.take(body, route.group)
        ctx.deployment, ctx.model_group, ctx.upstream_model = route.deployment, route.group, route.upstream_model
        self.fallbacks = request_fallbacks(ctx, body, proxy.router)

    async def run(self, proxy: ProxyEndpoint) -> None:
        if self.route is None:
            return  # answered at admission
        ctx = self.ctx
        try:
            self.response = await proxy._forward_with_retries(ctx, self.route, self.body, False, False, self.asked,
                                                             self.fallbacks)
        except ApiError as error:
            ctx.error = error
            self.response = error.response(proxy._headers(ctx))
        except asyncio.CancelledError:
            ctx.client_left = True  # another call answered first, or the client left
            raise
        except Exception:
            log.exception("unhandled error serving %s", ctx.request_id)
            ctx.error = ApiError(500, f"internal gateway error (request {ctx.request_id})", "internal_server_error")
            self.response = ctx.error.response(proxy._headers(ctx))

    @property
    def succeeded(self) -> bool:
        return self.response is not None and self.response.status < 400 and self.ctx.error is None

    def payload(self) -> bytes:
        """The answer as the upstream sent it, or this call's error envelope."""
        body = getattr(self.response, "body", None)
        if isinstance(body, bytes):
            return body
        error = self.ctx.error or ApiError(502, f"no answer for model {self.ctx.requested_model!r}",
                                           "api_connection_error")
        return error.body()


def models_of(proxy: ProxyEndpoint, body: dict[str, Any]) -> list[str]:
    models = [name.strip() for name in body["model"].split(",")]
    if not all(models):
        raise bad_request(f"'model' {body['model']!r} names an empty model in its comma-separated list", "model")
    if body.get("stream") is True:
        raise bad_request("a comma-separated 'model' answers a list of completions, which cannot be streamed; "
                          "leave out `stream` or name one model", "stream")
    for name in models:
        if not proxy.router.knows(name):
            from gateway.proxy import model_not_found

            raise model_not_found(name, proxy.endpoint)
    return models


async def serve(proxy: ProxyEndpoint, outer: Ctx, body: dict[str, Any]) -> web.StreamResponse:
    fastest = body.pop("fastest_response", None)
    if fastest is not None and not isinstance(fastest, bool):
        raise bad_request("fastest_response must be true or false", "fastest_response")
    calls = [Call(proxy, outer, index, name, body) for index, name in enumerate(models_of(proxy, body))]
    try:
        for call in calls:
            await call.admit(proxy)
        if fastest:
            return await _fastest(proxy, outer, calls)
        await asyncio.gather(*(call.run(proxy) for call in calls))
        if not any(call.succeeded for call in calls):
            return _first_failure(calls)
        payload = b"[" + b",".join(call.payload() for call in calls) + b"]"
        headers = proxy._headers(outer)
        headers["Content-Type"] = "application/json"
        return web.Response(status=200, body=payload, headers=headers)
    except ApiError as error:
        for call in calls:
            if call.admitted and call.ctx.error is None:
                call.ctx.error = error  # turned away with the batch: nothing was sent for it
        raise
    except asyncio.CancelledError:
        for call in calls:
            call.ctx.client_left = True
        raise
    finally:
        for call in calls:
            if call.admitted and not call.settled:
                call.settled = True
                proxy._settle(call.ctx, call.response)


async def _fastest(proxy: ProxyEndpoint, outer: Ctx, calls: list[Call]) -> web.StreamResponse:
    """LiteLLM's fastest_response: the first good answer, as the upstream sent it; the rest are cancelled."""
    tasks = {asyncio.ensure_future(call.run(proxy)): call for call in calls}
    pending = set(tasks)
    winner: Call | None = None
    try:
        while pending and winner is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            winner = next((tasks[task] for task in done if tasks[task].succeeded), None)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    if winner is None or winner.response is None:
        return _first_failure(calls)
    winner.response.headers[proxy.header_prefix + FASTEST_HEADER] = "True"
    winner.response.headers["X-Request-ID"] = outer.request_id
    return winner.response


def _first_failure(calls: list[Call]) -> web.StreamResponse:
    for call in calls:
        if call.response is not None and not call.ctx.client_left:
            return call.response
    raise ApiError(502, "no model of the batch answered", "api_connection_error")
