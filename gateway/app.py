"""The aiohttp application: its state, its routes under every prefix, its error envelope."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import openapi, ui
from gateway.access_log import AccessLog
from gateway.anthropic.errors import ANTHROPIC_ERRORS
from gateway.anthropic.schema import MESSAGES_REQUESTS
from gateway.budget.ledger import RedisLedger
from gateway.catalog import CATALOG, Catalog
from gateway.config import Config
from gateway.context import parse_networks
from gateway.cors import Cors
from gateway.errors import OPENAI_ERRORS, ApiError, ErrorShape, bad_request
from gateway.info import INFO, InfoRoutes, ReadinessCheck, not_found
from gateway.limits.buckets import RedisLimiter
from gateway.limits.combined import RedisAdmitter
from gateway.limits.deployments import DeploymentLimits
from gateway.management import (
    access_groups,
    budgets,
    credentials,
    end_users,
    keys,
    models,
    organizations,
    router_settings,
    spend,
    teams,
    users,
)
from gateway.management.common import SERVICES
from gateway.management.key_policy import KEY_POLICY, KeyPolicy
from gateway.management.rotation import KEY_ROTATION, KeyRotation, RotationSettings
from gateway.media import MEDIA, MediaEndpoint
from gateway.openai_requests import REQUESTS
from gateway.openapi import Operation, describe
from gateway.plugin import Chain
from gateway.plugin_loader import build_chain
from gateway.proxy import IN_FLIGHT, MAX_REQUEST_MB, InFlight, ProxyEndpoint
from gateway.responses_api import StoredResponses
from gateway.responses_api import add_routes as add_response_routes
from gateway.responses_store import ResponseRoutes
from gateway.router import Router
from gateway.services import Services, open_services
from gateway.translate.responses_wire import ResponsesRequest
from gateway.ui.base import UI as ADMIN_UI
from gateway.ui.security import SAME_ORIGIN_ONLY
from gateway.upstreams import Pools

log = logging.getLogger("gateway")

CONFIG = web.AppKey("config", Config)
ROUTER = web.AppKey("router", Router)
POOLS = web.AppKey("pools", Pools)
READINESS = web.AppKey("readiness", list[ReadinessCheck])
CHAIN = web.AppKey("chain", Chain)
CORS = web.AppKey("cors", Cors)
ACCESS_LOG = web.AppKey("access_log", AccessLog)
DEPLOYMENT_LIMITS = web.AppKey("deployment_limits", DeploymentLimits)

DEFAULT_MAX_REQUEST_MB = 64.0
PROXIED = ("chat/completions", "completions", "embeddings", "moderations", "images/generations")
# OpenAI's Responses API: POST creates (relayed, or translated to chat completions); GET and DELETE of one
# stored answer go to the deployment that holds it (gateway/responses_api.py).
RESPONSES = "responses"
RESPONSE_ROUTES = web.AppKey("response_routes", ResponseRoutes)
# Anthropic's Messages API, at /v1 only, as Anthropic serves it (Claude Code adds `?beta=true`, which is ignored).
MESSAGES = ("messages", "messages/count_tokens")


def path_prefixes(config: Config) -> list[str]:
    """The root, then every configured prefix (and LiteLLM's SERVER_ROOT_PATH), as `/a/b`."""
    found = [""]
    for raw in [*config.gateway_settings.path_prefixes, os.environ.get("SERVER_ROOT_PATH", "")]:
        prefix = "/" + raw.strip("/") if raw.strip("/") else ""
        if prefix not in found:
            found.append(prefix)
    return found


@web.middleware
def openai_errors(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Whatever goes wrong, the client gets the OpenAI envelope (Anthropic's shape under /v1/messages) and
    the process goes on. Requests the proxy does not log itself (management, model info, /health) get their
    access log line here.
    Not a coroutine itself: a proxied stream then holds one frame fewer for as long as it is open."""
    if isinstance(getattr(handler, "__self__", None), ProxyEndpoint):
        return _enveloped(request, handler)
    return _logged(request, handler)


async def _logged(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await _enveloped(request, handler)
    cors = request.app.get(CORS)
    if cors is not None and (origin := request.headers.get("Origin")) is not None and not response.prepared \
            and response.headers.get(SAME_ORIGIN_ONLY[0]) != SAME_ORIGIN_ONLY[1]:
        cors.mark_headers(origin, response.headers)
    access_log = request.app.get(ACCESS_LOG)
    if access_log is not None and not request.path.endswith(PROBES):
        access_log.record_other(request, response.status, time.perf_counter() - started)
    return response


# Liveness and readiness probes come every few seconds from the orchestrator: not logged.
PROBES = ("/health/liveliness", "/health/liveness", "/health/readiness")


# PostgreSQL keeps no text with a NUL in it: a name holding one is refused here, not at the store's 500.
NUL_IN_URL = "the request's path or query holds a NUL character (%00)"


def error_shape(request: web.Request) -> ErrorShape:
    """The shape of errors answered outside a proxy route's own handling: its caller's API's."""
    return ANTHROPIC_ERRORS if "/v1/messages" in request.path else OPENAI_ERRORS


async def _enveloped(request: web.Request, handler: Handler) -> web.StreamResponse:
    if "\x00" in request.path or "\x00" in request.query_string:
        return await _failure(request, bad_request(NUL_IN_URL))
    try:
        return await handler(request)
    except ApiError as error:
        return await _failure(request, error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if request.method == "OPTIONS" and exc.status in (404, 405) and (cors := request.app.get(CORS)) is not None:
            return await cors.preflight(request)  # no route has OPTIONS: CORS answers them all
        if exc.status == 404:
            return await _failure(request, not_found(request))
        if exc.status == 405:
            return await _failure(request, ApiError(405, f"{request.method} is not allowed on {request.path}"),
                                  {"Allow": exc.headers.get("Allow", "")})
        return await _failure(request, ApiError(exc.status, exc.text or exc.reason))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return await _failure(request, ApiError(500, "internal gateway error; the request id in the logs "
                                                "has the details", "internal_server_error"))


async def _failure(request: web.Request, error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    """The error in its caller's shape: a page under the admin UI, else the API's envelope."""
    admin_ui = request.app.get(ADMIN_UI)
    if admin_ui is not None and admin_ui.serves(request.path):
        return await admin_ui.failure(request, error, headers)
    return error_shape(request).response(error, headers)


async def build_app(config: Config, access_source: str = "gateway.access") -> web.Application:
    """Called inside the running loop, since the upstream sessions belong to it."""
    max_mb = config.general_settings.max_request_size_mb or DEFAULT_MAX_REQUEST_MB
    app = web.Application(middlewares=[openai_errors], client_max_size=int(max_mb * 1024 * 1024))
    router = Router(config)
    pools = Pools(config, router)
    app[CONFIG] = config
    app[MAX_REQUEST_MB] = max_mb
    app[ROUTER] = router
    app[POOLS] = pools
    app[KEY_POLICY] = KeyPolicy(config)
    rotation = RotationSettings.from_environment()
    services = await open_services(config, router)
    app[SERVICES] = services
    if rotation.enabled:
        app[KEY_ROTATION] = KeyRotation(services, rotation).start()
    try:
        app[CHAIN] = build_chain(config, services)
    except BaseException:
        await services.close()
        await pools.close()
        raise
    catalog = app[CATALOG] = Catalog(config, router, pools, services.pricing, services.store)
    try:
        await catalog.load()
    except BaseException:
        await services.close()
        await pools.close()
        raise
    services.accounts.watchers["model"] = services.accounts.watchers["credential"] = catalog.changed
    app[READINESS] = [_database_check(services)]
    if services.redis is not None:
        app[READINESS].append(_redis_check(services.redis))
    app.on_cleanup.append(_close)
    if config.gateway_settings.cors_allow_origins:
        app[CORS] = Cors(config.gateway_settings.cors_allow_origins)
    _add_routes(app, access_source)
    app.on_startup.append(_publish_openapi)
    return app


async def _publish_openapi(app: web.Application) -> None:
    openapi.publish(app, path_prefixes(app[CONFIG]))


async def _close(app: web.Application) -> None:
    await app[CATALOG].close()
    await app[RESPONSE_ROUTES].close()
    if KEY_ROTATION in app:
        await app[KEY_ROTATION].close()
    await app[CHAIN].close()
    await app[DEPLOYMENT_LIMITS].close()
    await app[SERVICES].close()
    await app[POOLS].close()


async def _close_access_log(access_log: AccessLog) -> None:
    access_log.close()


def _redis_check(redis: Any) -> ReadinessCheck:
    async def check() -> tuple[str, bool, str]:
        try:
            await asyncio.wait_for(redis.ping(), 2.0)
        except Exception as exc:
            return "cache", False, f"{type(exc).__name__}: {exc}"
        return "cache", True, ""

    return check


def _database_check(services: Services) -> ReadinessCheck:
    async def check() -> tuple[str, bool, str]:
        try:
            await asyncio.wait_for(services.store.ping(), 2.0)
        except Exception as exc:
            return "db", False, f"{type(exc).__name__}: {exc}"
        return "db", True, ""

    return check


def _add_routes(app: web.Application, access_source: str) -> None:
    config = app[CONFIG]
    router = app[ROUTER]
    settings = config.gateway_settings
    trusted = parse_networks(settings.trusted_proxies)
    access_log = AccessLog(access_source, json=bool(config.litellm_settings.json_logs)) \
        if AccessLog.enabled() else None
    pricing = app[SERVICES].pricing
    in_flight = app[IN_FLIGHT] = InFlight(settings.max_in_flight)
    if access_log is not None:
        app[ACCESS_LOG] = access_log
        app.on_cleanup.append(lambda _: _close_access_log(access_log))
    services = app[SERVICES]
    combined = RedisAdmitter(services.limiter, services.ledger) \
        if isinstance(services.limiter, RedisLimiter) and isinstance(services.ledger, RedisLedger) else None
    deployment_limits = app[DEPLOYMENT_LIMITS] = DeploymentLimits(services.limiter, router,
                                                                       config.gateway_settings.fail_open, combined)
    info = app[INFO] = InfoRoutes(router, app[READINESS], settings.health_check_timeout,
                                  config.litellm_settings.success_callback, app[SERVICES].authenticator,
                                  app[POOLS].probes)
    costs = router_settings.CostMap(pricing.table)
    response_routes = app[RESPONSE_ROUTES] = ResponseRoutes(services.store.db)
    stored = StoredResponses(router, response_routes, services.authenticator)
    for prefix in path_prefixes(config):
        creates = ProxyEndpoint(RESPONSES, router, deployment_limits, app[CHAIN], trusted,
                                settings.tracking_header_prefix, access_log, pricing, in_flight, cors=app.get(CORS),
                                responses=response_routes)
        describe(creates.handle, Operation(body=ResponsesRequest, summary="OpenAI's /v1/responses"))
        app.router.add_post(f"{prefix}/v1/{RESPONSES}", creates.handle)
        app.router.add_post(f"{prefix}/{RESPONSES}", creates.handle)
        add_response_routes(app, prefix, stored)
        for endpoint in PROXIED:
            handler = ProxyEndpoint(endpoint, router, deployment_limits, app[CHAIN], trusted,
                                    settings.tracking_header_prefix, access_log, pricing, in_flight,
                                    cors=app.get(CORS), moderation_model=config.general_settings.moderation_model)
            # A bound coroutine method, so aiohttp calls it directly rather than through its
            # wrapper for plain callables.
            describe(handler.handle, Operation(body=REQUESTS[endpoint], summary=f"OpenAI's /v1/{endpoint}"))
            app.router.add_post(f"{prefix}/v1/{endpoint}", handler.handle)
            app.router.add_post(f"{prefix}/{endpoint}", handler.handle)
            azure = ProxyEndpoint(endpoint, router, deployment_limits, app[CHAIN], trusted,
                                  settings.tracking_header_prefix, access_log, pricing, in_flight, model_in_path=True,
                                  cors=app.get(CORS))
            describe(azure.handle, Operation(body=REQUESTS[endpoint],
                                             summary=f"Azure OpenAI's {endpoint}, the deployment named in the path"))
            app.router.add_post(prefix + "/openai/deployments/{model}/" + endpoint, azure.handle)
        for endpoint in MEDIA:
            media = MediaEndpoint(endpoint, router, deployment_limits, app[CHAIN], trusted,
                                  settings.tracking_header_prefix, access_log, pricing, in_flight, cors=app.get(CORS),
                                  max_bytes=int(app[MAX_REQUEST_MB] * 1024 * 1024))
            describe(media.handle, Operation(body=REQUESTS[endpoint], summary=f"OpenAI's /v1/{endpoint}"
                                             if endpoint != "rerank" else "Cohere's /v1/rerank",
                                             media_type="multipart/form-data" if media.upload
                                             else "application/json"))
            app.router.add_post(f"{prefix}/v1/{endpoint}", media.handle)
            app.router.add_post(f"{prefix}/{endpoint}", media.handle)
        cohere_v2 = MediaEndpoint("rerank", router, deployment_limits, app[CHAIN], trusted,
                                  settings.tracking_header_prefix, access_log, pricing, in_flight, cors=app.get(CORS),
                                  rerank_version="v2")
        describe(cohere_v2.handle, Operation(body=REQUESTS["rerank"], summary="Cohere's /v2/rerank"))
        app.router.add_post(f"{prefix}/v2/rerank", cohere_v2.handle)
        for endpoint in MESSAGES:
            handler = ProxyEndpoint(endpoint, router, deployment_limits, app[CHAIN], trusted,
                                    settings.tracking_header_prefix, access_log, pricing, in_flight,
                                    cors=app.get(CORS))
            describe(handler.handle, Operation(body=MESSAGES_REQUESTS[endpoint],
                                               summary=f"Anthropic's /v1/{endpoint}", errors="anthropic"))
            app.router.add_post(f"{prefix}/v1/{endpoint}", handler.handle)
        for base in (f"{prefix}/v1", prefix):
            app.router.add_get(f"{base}/models", info.list_models)
            app.router.add_get(base + "/models/{model:.+}", info.get_model)
            app.router.add_get(f"{base}/model/info", info.model_info)
            app.router.add_get(f"{base}/model_group/info", info.model_group_info)
        app.router.add_get(f"{prefix}/health", info.health)
        app.router.add_get(f"{prefix}/v2/model/info", info.model_info_v2)
        app.router.add_get(f"{prefix}/routes", info.routes)
        app.router.add_get(f"{prefix}/guardrails/list", info.guardrails)
        app.router.add_get(f"{prefix}/v2/guardrails/list", info.guardrails)
        app.router.add_get(f"{prefix}/policies/list", info.policies)
        app.router.add_get(f"{prefix}/policies/attachments/list", info.policies)
        app.router.add_get(f"{prefix}/health/liveliness", info.liveliness)
        app.router.add_get(f"{prefix}/health/liveness", info.liveliness)
        app.router.add_get(f"{prefix}/health/readiness", info.readiness_check)
        keys.add_routes(app, prefix)
        users.add_routes(app, prefix)
        teams.add_routes(app, prefix)
        spend.add_routes(app, prefix)
        end_users.add_routes(app, prefix)
        budgets.add_routes(app, prefix)
        organizations.add_routes(app, prefix)
        access_groups.add_routes(app, prefix)
        router_settings.add_routes(app, prefix, costs)
        models.add_routes(app, prefix)
        credentials.add_routes(app, prefix)
        openapi.add_routes(app, prefix)
        ui.add_routes(app, prefix)
        for plugin in app[CHAIN].plugins:
            plugin.add_routes(app, prefix)
