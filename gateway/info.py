"""Read-only endpoints: model listing, model info, liveness, readiness and deployment health."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway import __version__
from gateway.access import may_use
from gateway.errors import ApiError
from gateway.identity import Authenticator
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

    async def list_models(self, request: web.Request) -> web.Response:
        caller = await self.authenticator.authenticate(request.headers)
        names = [n for n in self.router.public_names() if may_use(caller, n, self.router.aliases)]
        return json_response({"object": "list", "data": [_model_card(n) for n in names]})

    async def get_model(self, request: web.Request) -> web.Response:
        caller = await self.authenticator.authenticate(request.headers)
        name = request.match_info["model"]
        if not self.router.knows(name) or not may_use(caller, name, self.router.aliases):
            raise model_not_found(name)
        return json_response(_model_card(name))

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
                               "litellm_provider": d.provider.name},
            }
            for d in self.router.deployments
            if (wanted is None or d.id == wanted) and may_use(caller, d.group, self.router.aliases)
        ]

    async def model_info_v2(self, request: web.Request) -> web.Response:
        """LiteLLM's paged /v2/model/info: `page`, `size` and `search` (in the model name)."""
        cards = await self._deployment_cards(request)
        search = (request.query.get("search") or "").lower()
        data = [d for d in cards if search in d["model_name"].lower()]
        page, size = _positive(request, "page", 1), _positive(request, "size", 50)
        total_pages = -(-len(data) // size)
        return json_response({"data": data[(page - 1) * size:page * size], "total_count": len(data),
                              "current_page": page, "total_pages": total_pages, "size": size})

    async def model_group_info(self, request: web.Request) -> web.Response:
        """LiteLLM's /model_group/info: one entry per group the caller may use (`?model_group=` for one)."""
        caller = await self.authenticator.authenticate(request.headers)
        wanted = request.query.get("model_group")
        groups: dict[str, list[Deployment]] = {}
        for deployment in self.router.deployments:
            groups.setdefault(deployment.group, []).append(deployment)
        data = []
        for name, members in groups.items():
            if (wanted is not None and name != wanted) or not may_use(caller, name, self.router.aliases):
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
                "access_groups": info.get("access_groups") or [],
            })
        return json_response({"data": data})

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

    async def guardrails(self, request: web.Request) -> web.Response:
        """LiteLLM's guardrail list, for the tools that read it first: the gateway runs no guardrails, so
        it is empty rather than a 404 that would stop them."""
        await self.authenticator.authenticate(request.headers)
        return json_response({"guardrails": []})

    async def policies(self, request: web.Request) -> web.Response:
        """LiteLLM's guardrail policies, likewise: none, listed as LiteLLM lists them."""
        await self.authenticator.authenticate(request.headers)
        return json_response({"policies": [], "total_count": 0})

    async def liveliness(self, request: web.Request) -> web.Response:
        return json_response("I'm alive!")

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

    async def health(self, request: web.Request) -> web.Response:
        caller = await self.authenticator.authenticate(request.headers)
        if not caller.is_admin:
            raise ApiError(403, "/health probes every deployment and is for proxy admins", "auth_error")
        wanted = request.query.get("model")
        deployments = [d for d in self.router.deployments if wanted is None or d.group == wanted]
        if wanted is not None and not deployments:
            raise model_not_found(wanted)
        results = await asyncio.gather(*(self._probe(d) for d in deployments))
        healthy = [entry for entry, error in results if error is None]
        unhealthy = [{**entry, **error} for entry, error in results if error is not None]
        return json_response({"healthy_endpoints": healthy, "unhealthy_endpoints": unhealthy,
                              "healthy_count": len(healthy), "unhealthy_count": len(unhealthy)})

    async def _probe(self, deployment: Deployment) -> tuple[dict[str, Any], dict[str, Any] | None]:
        params = deployment.public_params()
        entry = {k: params[k] for k in HEALTH_FIELDS if k in params}
        entry.update(model_name=deployment.group, model_id=deployment.id, mode=deployment.mode)
        cooling = deployment.cooldown_until - self.router.clock()
        entry["cooldown_remaining_s"] = round(cooling, 1) if cooling > 0 else 0
        if deployment.provider.is_mock:
            return entry, None
        try:
            async with self._probe_request(deployment) as response:
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

    def _probe_request(self, deployment: Deployment) -> Any:
        """The cheapest call that proves the deployment serves: a one-token answer, or its model list."""
        timeout = aiohttp.ClientTimeout(total=self.health_timeout)
        headers = deployment.headers
        tls = deployment.endpoint.tls or True
        if deployment.is_wildcard:
            return self.probes.get(f"{deployment.base_url}/models", headers=headers, timeout=timeout, ssl=tls)
        model = deployment.model_template
        body: dict[str, object]
        if deployment.mode == "embedding":
            path, body = "embeddings", {"model": model, "input": "ping"}
        elif deployment.mode == "completion":
            path, body = "completions", {"model": model, "prompt": "ping", "max_tokens": 1}
        else:
            path, body = "chat/completions", {"model": model, "max_tokens": 1,
                                              "messages": [{"role": "user", "content": "ping"}]}
        return self.probes.post(f"{deployment.base_url}/{path}", data=orjson.dumps(body), headers=headers,
                                timeout=timeout, ssl=tls)


def not_found(request: web.Request) -> ApiError:
    return ApiError(404, f"{request.method} {request.path} is not an endpoint of this gateway",
                    "invalid_request_error", code="404")


def _positive(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, f"query parameter {name} must be a whole number above 0", "invalid_request_error", name)
    return int(raw)
