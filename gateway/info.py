"""Read-only endpoints: model listing, model info, liveness, readiness and deployment health."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from gateway import __version__
from gateway.access import ALL_TEAM_MODELS, EVERY_MODEL, may_use
from gateway.access_groups import AccessGroups
from gateway.anthropic.requests import DEFAULT_VERSION
from gateway.bearer import TokenUnavailable
from gateway.bedrock.paths import operation_path, split_route
from gateway.errors import ApiError
from gateway.identity import Authenticator, Caller
from gateway.media import RERANK_ONLY, rerank_path
from gateway.openapi import Query, documented
from gateway.protocols import Api
from gateway.proxy import model_not_found
from gateway.router import Deployment, Router

# A readiness check answers (component, ok, detail); stores register theirs.
ReadinessCheck = Callable[[], Awaitable[tuple[str, bool, str]]]

# LiteLLM's own constant, kept so that clients comparing listings see no churn.
MODEL_CREATED_AT = 1677610602
# What /health shows of a deployment: an allow-list, so no secret can slip in.
HEALTH_FIELDS = ("model", "api_base", "api_version", "custom_llm_provider", "rpm", "tpm")


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": MODEL_CREATED_AT, "owned_by": "openai"}


class InfoRoutes:
    """/v1/models lists what the caller's key may use; /model/info and /health need a valid key too."""

    def __init__(self, router: Router, readiness: list[ReadinessCheck], health_timeout: float,
                 callbacks: list[str], authenticator: Authenticator, probes: aiohttp.ClientSession) -> None:
        self.authenticator = authenticator
        self.probes = probes
        self.router = router
        self.readiness = readiness
        self.health_timeout = health_timeout
        self.callbacks = callbacks

    def _may(self, caller: Caller, name: str) -> bool:
        return may_use(caller, name, self.router.aliases, self.router.access_groups)

    @documented(summary="The models the caller's key may use")
    async def list_models(self, request: web.Request) -> web.Response:
        """LiteLLM's `only_model_access_groups=True` lists the access groups the caller's models name
        (every group for an unrestricted caller) instead of models; `include_model_access_groups=True`
        adds them after the models."""
        caller = await self.authenticator.authenticate(request.headers)
        groups = group_names(caller, self.router.access_groups)
        if _flag(request, "only_model_access_groups"):
            names = groups
        else:
            names = [n for n in self.router.public_names() if self._may(caller, n)]
            if _flag(request, "include_model_access_groups"):
                names += [g for g in groups if g not in names]
        return json_response({"object": "list", "data": [_model_card(n) for n in names]})

    @documented(summary="One model, if the caller's key may use it")
    async def get_model(self, request: web.Request) -> web.Response:
        caller = await self.authenticator.authenticate(request.headers)
        name = request.match_info["model"]
        if not self.router.knows(name) or not self._may(caller, name):
            raise model_not_found(name)
        return json_response(_model_card(name))

    @documented(summary="Every deployment the caller may use", query=[Query("litellm_model_id")])
    async def model_info(self, request: web.Request) -> web.Response:
        return json_response({"data": await self._deployment_cards(request)})

    async def _deployment_cards(self, request: web.Request) -> list[dict[str, Any]]:
        """Every deployment the caller may use (`?litellm_model_id=` for one), as /model/info shows it."""
        caller = await self.authenticator.authenticate(request.headers)
        wanted = request.query.get("litellm_model_id")
        return [
            {
                "model_name": d.group,
                "litellm_params": d.public_params(),
                "model_info": {**d.entry.model_info, "id": d.id, "mode": d.mode,
                               "litellm_provider": d.provider.name, "db_model": d.from_store},
            }
            for d in self.router.deployments
            if (wanted is None or d.id == wanted) and self._may(caller, d.group)
        ]

    @documented(summary="Deployments, a page at a time", query=[Query("page", "integer"), Query("size", "integer"),
                                                                  Query("search")])
    async def model_info_v2(self, request: web.Request) -> web.Response:
        """LiteLLM's paged /v2/model/info: `page`, `size` and `search` (in the model name)."""
        cards = await self._deployment_cards(request)
        search = (request.query.get("search") or "").lower()
        data = [d for d in cards if search in d["model_name"].lower()]
        page, size = _positive(request, "page", 1), _positive(request, "size", 50)
        total_pages = -(-len(data) // size)
        return json_response({"data": data[(page - 1) * size:page * size], "total_count": len(data),
                              "current_page": page, "total_pages": total_pages, "size": size})

    @documented(summary="One entry per model group", query=[Query("model_group")])
    async def model_group_info(self, request: web.Request) -> web.Response:
        """LiteLLM's /model_group/info: one entry per group the caller may use (`?model_group=` for one)."""
        caller = await self.authenticator.authenticate(request.headers)
        wanted = request.query.get("model_group")
        groups: dict[str, list[Deployment]] = {}
        for deployment in self.router.deployments:
            groups.setdefault(deployment.group, []).append(deployment)
        data = []
        for name, members in groups.items():
            if (wanted is not None and name != wanted) or not self._may(caller, name):
                continue
            info = members[0].entry.model_info
            data.append({
                "model_group": name,
                "providers": sorted({d.provider.name for d in members}),
                "mode": members[0].mode,
                "max_input_tokens": info.get("max_input_tokens"),
                "max_output_tokens": info.get("max_output_tokens"),
                "input_cost_per_token": (members[0].entry.litellm_params.input_cost_per_token
                                         or info.get("input_cost_per_token")),
                "output_cost_per_token": (members[0].entry.litellm_params.output_cost_per_token
                                          or info.get("output_cost_per_token")),
                "tpm": sum(d.tpm for d in members if d.tpm is not None) or None,
                "rpm": sum(d.rpm for d in members if d.rpm is not None) or None,
                "supports_function_calling": bool(info.get("supports_function_calling")),
                "supports_vision": bool(info.get("supports_vision")),
                "is_public_model_group": False,
                "access_groups": list(self.router.access_groups.of_model.get(name, ())),
            })
        return json_response({"data": data})

    @documented(summary="Every route the gateway serves")
    async def routes(self, request: web.Request) -> web.Response:
        """LiteLLM's /routes: every route the gateway serves, for tools that discover them (any valid key)."""
        await self.authenticator.authenticate(request.headers)
        found = []
        for route in request.app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            path = info.get("path") or info.get("formatter")
            if path is not None:
                found.append({"path": path, "methods": [route.method], "name": route.name,
                              "endpoint": getattr(route.handler, "__name__", None)})
        return json_response({"routes": found})

    @documented(summary="The guardrails (none)")
    async def guardrails(self, request: web.Request) -> web.Response:
        """LiteLLM's guardrail list, for the tools that read it first: the gateway runs no guardrails, so
        it is empty rather than a 404 that would stop them."""
        await self.authenticator.authenticate(request.headers)
        return json_response({"guardrails": []})

    @documented(summary="The policies and their attachments (none)")
    async def policies(self, request: web.Request) -> web.Response:
        """LiteLLM's policy list (and its attachments): the gateway runs no policies, so both are empty in
        LiteLLM's shape rather than a 404 that would stop the tools that read them first."""
        await self.authenticator.authenticate(request.headers)
        field = "attachments" if request.path.endswith("/attachments/list") else "policies"
        return json_response({field: [], "total_count": 0})

    @documented(summary="The process answers", public=True)
    async def liveliness(self, request: web.Request) -> web.Response:
        return json_response("I'm alive!")

    @documented(summary="The database and cache answer", public=True)
    async def readiness_check(self, request: web.Request) -> web.Response:
        results = await asyncio.gather(*(check() for check in self.readiness))
        ready = all(ok for _, ok, _ in results)
        components = {name: ("connected" if ok else f"unreachable: {detail}") for name, ok, detail in results}
        return json_response(
            {
                "status": "healthy" if ready else "unhealthy",
                "db": components.pop("db", "Not connected"),
                "cache": components.pop("cache", None),
                **components,
                "litellm_version": __version__,
                "success_callbacks": self.callbacks,
                "last_updated": datetime.now(UTC).isoformat(),
            },
            200 if ready else 503,
        )

    @documented(summary="Probe every deployment (proxy admins)", query=[Query("model")])
    async def health(self, request: web.Request) -> web.Response:
        caller = await self.authenticator.authenticate(request.headers)
        if not caller.is_admin:
            raise ApiError(403, "/health probes every deployment and is for proxy admins", "auth_error")
        wanted = request.query.get("model")
        deployments = [d for d in self.router.deployments if wanted is None or d.group == wanted]
        if wanted is not None and not deployments:
            raise model_not_found(wanted)
        results = await asyncio.gather(*(self.probe(d) for d in deployments))
        healthy = [entry for entry, error in results if error is None]
        unhealthy = [{**entry, **error} for entry, error in results if error is not None]
        return json_response({"healthy_endpoints": healthy, "unhealthy_endpoints": unhealthy,
                              "healthy_count": len(healthy), "unhealthy_count": len(unhealthy)})

    async def probe(self, deployment: Deployment) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """/health's check of one deployment (the admin UI runs it too): what it shows of the deployment, and
        None if it answered, else why not (`error`, `exception_status`)."""
        params = deployment.public_params()
        entry = {k: params[k] for k in HEALTH_FIELDS if k in params}
        entry.update(model_name=deployment.group, model_id=deployment.id, mode=deployment.mode)
        cooling = deployment.cooldown_until - self.router.clock()
        entry["cooldown_remaining_s"] = round(cooling, 1) if cooling > 0 else 0
        if deployment.provider.is_mock:
            return entry, None
        try:
            async with await self._probe_request(deployment) as response:
                if response.status >= 400:
                    text = (await response.text(errors="replace"))[:500]
                    return entry, {"error": f"upstream answered {response.status}: {text}",
                                   "exception_status": response.status}
                await response.read()
                return entry, None
        except TimeoutError:
            return entry, {"error": f"no answer within {self.health_timeout}s", "exception_status": 504}
        except aiohttp.ClientError as exc:
            return entry, {"error": f"unreachable: {type(exc).__name__}: {exc}", "exception_status": 502}
        except TokenUnavailable as exc:
            return entry, {"error": f"no token: {exc}", "exception_status": 502}
        except ApiError as exc:  # a request that cannot be made: a Bedrock deployment without credentials
            return entry, {"error": exc.message, "exception_status": exc.status}

    async def _probe_request(self, deployment: Deployment) -> Any:
        """The cheapest call that proves the deployment serves: a one-token answer, or its model list."""
        timeout = aiohttp.ClientTimeout(total=self.health_timeout)
        headers = deployment.headers
        native = deployment.protocol is Api.ANTHROPIC
        if native:
            headers = {**headers, "anthropic-version": DEFAULT_VERSION}
        tls = deployment.endpoint.tls or True
        if deployment.is_wildcard or deployment.mode in ("image_generation", "audio_speech", "audio_transcription"):
            # An image or speech costs real money, a transcription needs audio: that the deployment lists
            # its models is proof enough.
            return self.probes.get(f"{deployment.base_url}/models", headers=headers, timeout=timeout, ssl=tls)
        model = deployment.model_template
        if deployment.signer is not None:
            return self._bedrock_probe(deployment, headers, timeout, tls)
        body: dict[str, object]
        if deployment.mode == "embedding":
            path, body = "embeddings", {"model": model, "input": "ping"}
        elif deployment.mode == "moderation":
            path, body = "moderations", {"model": model, "input": "ping"}
        elif deployment.mode == "rerank" or deployment.provider.name in RERANK_ONLY:
            path, body = rerank_path(deployment, "v1"), {"model": model, "query": "ping", "documents": ["ping"]}
        elif deployment.mode == "completion":
            path, body = "completions", {"model": model, "prompt": "ping", "max_tokens": 1}
        else:
            path, body = "messages" if native else "chat/completions", {
                "model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}
        data = orjson.dumps(body)
        if deployment.shape is not None:  # a cloud's own URL and token, as a request gets them
            path, data, lines = await deployment.shape.prepare(path, data, b"", model)
            headers = {**headers, **_header_lines(lines)}
        return self.probes.post(f"{deployment.base_url}/{path}", data=data, headers=headers, timeout=timeout,
                                ssl=tls)

    def _bedrock_probe(self, deployment: Deployment, headers: dict[str, str], timeout: aiohttp.ClientTimeout,
                       tls: Any) -> Any:
        """A one-token Converse call, signed as every Bedrock request is; the URL is sent as signed (`encoded`:
        yarl would otherwise write the model id's %3A back as `:`)."""
        url = f"{deployment.base_url}/{operation_path(split_route(deployment.model_template)[1], 'converse')}"
        payload = orjson.dumps({"messages": [{"role": "user", "content": [{"text": "ping"}]}],
                                "inferenceConfig": {"maxTokens": 1}})
        assert deployment.signer is not None
        return self.probes.post(URL(url, encoded=True), data=payload, timeout=timeout, ssl=tls,
                                headers={**headers, **deployment.signer.signed(url, payload)})


def _header_lines(lines: bytes) -> dict[str, str]:
    found = {}
    for line in lines.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            found[name] = value.strip()
    return found


INFO = web.AppKey("info", InfoRoutes)


def not_found(request: web.Request) -> ApiError:
    return ApiError(404, f"{request.method} {request.path} is not an endpoint of this gateway",
                    "invalid_request_error", code="404")


def group_names(caller: Caller, groups: AccessGroups) -> list[str]:
    """The access groups a caller's models name, as LiteLLM lists them: the key's models, else its team's;
    every group when neither restricts it."""
    key = caller.key
    models = [] if key is None else (caller.team.models if caller.team is not None and ALL_TEAM_MODELS in key.models
                                     else key.models)
    if not models and caller.team is not None:
        models = caller.team.models
    if not models or any(m in EVERY_MODEL for m in models):
        return sorted(groups.by_name)
    return [m for m in dict.fromkeys(models) if m in groups.by_name]


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1", "yes")


def _positive(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, f"query parameter {name} must be a whole number above 0", "invalid_request_error", name)
    return int(raw)
