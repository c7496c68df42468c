"""GET and DELETE of a stored Responses API answer (`/v1/responses/{id}`, `/v1/responses/{id}/input_items`),
sent to the deployment that made it (gateway/responses_store.py) and relayed as it answers.

The caller must be allowed the deployment's model group, as for a create; nothing is charged. A retrieve
with `stream=true` is relayed as the stream it is.
"""

from __future__ import annotations

import logging

from aiohttp import ClientTimeout, web

from gateway.access import check_model_access
from gateway.bearer import TokenUnavailable
from gateway.errors import ApiError
from gateway.identity import Authenticator
from gateway.openapi import Operation, Query, describe
from gateway.proxy import NOT_RELAYED
from gateway.responses_store import ResponseRoutes
from gateway.router import Deployment, Router
from gateway.upstream_http import UpstreamUnreachable

log = logging.getLogger("gateway")


class StoredResponses:
    __slots__ = ("router", "routes", "authenticator")

    def __init__(self, router: Router, routes: ResponseRoutes, authenticator: Authenticator) -> None:
        self.router = router
        self.routes = routes
        self.authenticator = authenticator

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        return await self._relay(request, "GET", "")

    async def delete(self, request: web.Request) -> web.StreamResponse:
        response = await self._relay(request, "DELETE", "")
        if response.status == 200:
            await self.routes.forget(request.match_info["response_id"])
        return response

    async def input_items(self, request: web.Request) -> web.StreamResponse:
        return await self._relay(request, "GET", "/input_items")

    async def _holder(self, request: web.Request, response_id: str) -> Deployment:
        caller = await self.authenticator.authenticate(request.headers)
        held_by = await self.routes.deployment_of(response_id)
        deployment = self.router.by_id.get(held_by) if held_by is not None else None
        if deployment is None:
            # OpenAI's words for an id it does not have, and why this gateway may not know it.
            raise ApiError(404, f"Response with id '{response_id}' not found. This gateway routes back only the "
                           "responses it created with store left on, at deployments that serve the Responses "
                           "API; answers translated to chat completions are not stored.",
                           "invalid_request_error", "response_id")
        check_model_access(caller, deployment.group, self.router.aliases, self.router.access_groups)
        return deployment

    async def _relay(self, request: web.Request, method: str, suffix: str) -> web.StreamResponse:
        response_id = request.match_info["response_id"]
        deployment = await self._holder(request, response_id)
        path = f"responses/{response_id}{suffix}"
        if request.query_string:
            path += "?" + request.query_string
        try:
            lines = b""
            if deployment.shape is not None:  # Azure's path, api-version and token (gateway/upstream_shape.py)
                path, _, lines = await deployment.shape.prepare(path, b"", lines, deployment.model_template)
            data = deployment.endpoint.bodiless(method, path, lines)
            upstream = await deployment.pool.send(deployment.endpoint, data,
                                                  ClientTimeout(total=None, connect=deployment.total_seconds,
                                                                sock_read=deployment.stream_seconds
                                                                or deployment.total_seconds))
        except UpstreamUnreachable as exc:
            raise ApiError(502, f"upstream {deployment.api_base} is unreachable: {exc}", "api_connection_error") \
                from None
        except TokenUnavailable as exc:
            raise ApiError(502, f"no access token for upstream {deployment.api_base}: {exc}",
                           "api_connection_error") from None
        except TimeoutError:
            raise ApiError(504, f"upstream {deployment.api_base} did not answer in time", "timeout_error") from None
        headers = {"Content-Type": upstream.header(b"content-type") or "application/json"}
        for raw_name, raw_value in upstream.raw_headers:
            name = raw_name.decode("latin-1")
            if name.lower() not in NOT_RELAYED:
                headers[f"llm_provider-{name}"] = raw_value.decode("latin-1")
        try:
            if upstream.content_type != "text/event-stream":
                return web.Response(status=upstream.status, body=await upstream.read(), headers=headers)
            response = web.StreamResponse(status=upstream.status, headers=headers)
            await response.prepare(request)
            try:
                async for chunk in upstream.chunks():
                    await response.write(chunk)
            except (UpstreamUnreachable, TimeoutError) as exc:
                log.warning("upstream %s broke off the stream of response %s: %s", deployment.api_base,
                            response_id, exc)
            return response
        except UpstreamUnreachable as exc:
            raise ApiError(502, f"upstream {deployment.api_base} broke off its answer: {exc}",
                           "api_connection_error") from None
        finally:
            upstream.release()


def add_routes(app: web.Application, prefix: str, stored: StoredResponses) -> None:
    describe(stored.retrieve, Operation(summary="OpenAI's GET /v1/responses/{id}, from the deployment that made it",
                                        query=(Query("include"), Query("stream", "boolean"),
                                               Query("starting_after", "integer"))))
    describe(stored.delete, Operation(summary="OpenAI's DELETE /v1/responses/{id}, at the deployment that made it"))
    describe(stored.input_items, Operation(summary="OpenAI's GET /v1/responses/{id}/input_items",
                                           query=(Query("after"), Query("limit", "integer"), Query("order"),
                                                  Query("include"))))
    for base in (f"{prefix}/v1", prefix):
        app.router.add_get(base + "/responses/{response_id}", stored.retrieve)
        app.router.add_delete(base + "/responses/{response_id}", stored.delete)
        app.router.add_get(base + "/responses/{response_id}/input_items", stored.input_items)
