"""LiteLLM's read-only settings endpoints: `GET /router/settings` (admins: the router's settings, each with
its type, default and current value), `GET /public/litellm_model_cost_map` (anyone: the bundled price
table, keyed by model, in LiteLLM's cost map shape) and `GET /public/model_hub` (any key: the groups
`litellm_settings.public_model_groups` makes public)."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import orjson
from aiohttp import web

from gateway.config import Config, RoutingStrategy
from gateway.management.common import admin, caller, json, services
from gateway.openapi import documented


class Field(msgspec.Struct):
    field_name: str
    field_type: str
    field_value: Any
    field_description: str
    field_default: Any
    ui_field_name: str
    options: list[str] | None = None
    link: str | None = None


# (name, type, default, description): the settings LiteLLM's /router/settings lists, in its order.
FIELDS: tuple[tuple[str, str, Any, str], ...] = (
    ("routing_strategy", "String", "simple-shuffle", "How a deployment is picked within a model group"),
    ("routing_strategy_args", "Dictionary", {}, "Options of the routing strategy"),
    ("num_retries", "Integer", 0, "Attempts after the first when a request fails"),
    ("timeout", "Float", None, "Seconds a whole answer may take"),
    ("stream_timeout", "Float", None, "Seconds of silence allowed inside a stream"),
    ("max_fallbacks", "Integer", 5, "Fallback groups tried at most for one request"),
    ("fallbacks", "List", [], "Groups to try when a group fails"),
    ("context_window_fallbacks", "List", [], "Groups to try when the prompt is too long for a group"),
    ("content_policy_fallbacks", "List", [], "Groups to try when a group refuses on content policy"),
    ("allowed_fails", "Integer", None, "Failures a deployment may have in a minute before it cools down"),
    ("cooldown_time", "Float", None, "Seconds a failing deployment rests"),
    ("retry_after", "Integer", 0, "Least seconds to wait before a retry"),
    ("retry_policy", "Dictionary", None, "Retries per kind of error"),
    ("model_group_alias", "Dictionary", {}, "Other names for model groups"),
    ("enable_pre_call_checks", "Boolean", False, "Check a deployment's context window before calling it"),
    ("default_litellm_params", "Dictionary", None, "Parameters added to every call"),
    ("set_verbose", "Boolean", False, "Verbose router logs"),
    ("default_max_parallel_requests", "Integer", None, "Connections at once to a deployment that sets none"),
    ("enable_tag_filtering", "Boolean", False, "Route by the request's tags"),
    ("tag_filtering_match_any", "Boolean", True, "A deployment matches on any tag rather than all"),
    ("disable_cooldowns", "Boolean", None, "Never rest failing deployments"),
)

STRATEGY_DESCRIPTIONS = {
    "simple-shuffle": "A deployment at random, weighted by weight, rpm or tpm.",
    "least-busy": "The deployment with the fewest requests in flight.",
    "latency-based-routing": "The deployment that answered fastest lately.",
    "usage-based-routing": "The deployment with the fewest tokens used this minute.",
    "usage-based-routing-v2": "The deployment with the fewest tokens used this minute.",
    "cost-based-routing": "The deployment with the lowest price a token.",
}
# Never shown: they are credentials.
SECRET_SETTINGS = frozenset({"redis_password", "redis_url", "redis_host", "redis_port"})


def current_values(config: Config) -> dict[str, Any]:
    """What the router runs with: the effective values, then the config's router_settings as written."""
    router = config.router_settings
    num_retries = router.num_retries if router.num_retries is not None else config.litellm_settings.num_retries
    values: dict[str, Any] = {name: default for name, _, default, _ in FIELDS}
    values.update({
        "routing_strategy": router.routing_strategy,
        "num_retries": num_retries or 0,
        "timeout": router.timeout or config.litellm_settings.request_timeout,
        "allowed_fails": router.allowed_fails if router.allowed_fails is not None else 3,
        "cooldown_time": router.cooldown_time if router.cooldown_time is not None else 5.0,
        "retry_after": router.retry_after or 0,
    })
    written = msgspec.to_builtins(router)
    values.update({k: v for k, v in written.items() if k not in SECRET_SETTINGS})
    return values


@documented(summary="The router's settings, their types and current values")
async def router_settings(request: web.Request) -> web.Response:
    await admin(request)
    values = current_values(services(request).config)
    fields = [Field(name, kind, values.get(name), description, default, name.replace("_", " ").title(),
                    list(get_args(RoutingStrategy)) if name == "routing_strategy" else None)
              for name, kind, default, description in FIELDS]
    return json({"fields": msgspec.to_builtins(fields), "current_values": values,
                 "routing_strategy_descriptions": STRATEGY_DESCRIPTIONS})


def cost_map(table: dict[str, dict[str, Any]]) -> bytes:
    """LiteLLM's model cost map: its `litellm_provider` where the bundled table says `provider`."""
    entries = {}
    for name, entry in table.items():
        shown = {k: v for k, v in entry.items() if k != "provider"}
        if "provider" in entry:
            shown["litellm_provider"] = entry["provider"]
        entries[name] = shown
    return orjson.dumps(entries)


class CostMap:
    """Made once: the table does not change while the gateway runs."""

    def __init__(self, table: dict[str, dict[str, Any]]) -> None:
        self.payload = cost_map(table)

    @documented(summary="The model cost map", public=True)
    async def handle(self, request: web.Request) -> web.Response:
        return web.Response(body=self.payload, content_type="application/json")


@documented(summary="The public model groups")
async def model_hub(request: web.Request) -> web.Response:
    await caller(request)
    found = services(request)
    public = found.config.litellm_settings.public_model_groups
    hub = []
    for name in public:
        members = found.router.groups.get(name)
        if not members:
            continue
        info = members[0].entry.model_info
        params = members[0].entry.litellm_params
        hub.append({
            "model_group": name,
            "providers": sorted({d.provider.name for d in members}),
            "mode": members[0].mode,
            "max_input_tokens": info.get("max_input_tokens"),
            "max_output_tokens": info.get("max_output_tokens"),
            "input_cost_per_token": params.input_cost_per_token or info.get("input_cost_per_token"),
            "output_cost_per_token": params.output_cost_per_token or info.get("output_cost_per_token"),
            "supports_function_calling": bool(info.get("supports_function_calling")),
            "supports_vision": bool(info.get("supports_vision")),
            "is_public_model_group": True,
        })
    return json(hub)


def add_routes(app: web.Application, prefix: str, costs: CostMap) -> None:
    app.router.add_get(f"{prefix}/router/settings", router_settings)
    app.router.add_get(f"{prefix}/public/litellm_model_cost_map", costs.handle)
    app.router.add_get(f"{prefix}/public/model_hub", model_hub)
