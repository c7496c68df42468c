"""May this key use this model? Its own `models`, narrowed by its team's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import Ctx
from gateway.errors import ApiError
from gateway.identity import Caller
from gateway.plugin import Plugin
from gateway.router import matches_pattern
from gateway.services import Services

ALL_TEAM_MODELS = "all-team-models"
EVERY_MODEL = frozenset({"*", "all-proxy-models"})


def allows(models: list[str], model: str) -> bool:
    """An empty list, `*` or `all-proxy-models` allows every model, as in LiteLLM; `openai/*` patterns match."""
    return (not models or any(m == model or m in EVERY_MODEL or ("*" in m and matches_pattern(m, model))
                              for m in models))


def denial(kind: str, models: list[str], model: str) -> ApiError:
    return ApiError(401, f"{kind} not allowed to access model. This {kind} can only access models={models!r}. "
                    f"Tried to access {model}", f"{kind}_model_access_denied", "model")


def check(caller: Caller, model: str) -> None:
    key = caller.key
    if key is None or model in key.aliases:
        return  # the master key, an open proxy, or an alias the admin put on this very key
    team_models = caller.team.models if caller.team is not None else []
    key_models = team_models if ALL_TEAM_MODELS in key.models else key.models
    if not allows(key_models, model):
        raise denial("key", key_models, model)
    if caller.team is not None and not allows(team_models, model):
        raise denial("team", team_models, model)


class ModelAccess(Plugin):
    name = "model_access"

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        if settings:
            raise ValueError(f"model_access takes no settings, got {sorted(settings)}")

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        if ctx.caller is not None and ctx.requested_model is not None:
            check(ctx.caller, ctx.requested_model)
        return None


PLUGIN = ModelAccess
