"""Which models a caller may use: its key's `models`, narrowed by its team's, as LiteLLM decides it."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import ApiError
from gateway.identity import Caller
from gateway.router import matches_pattern

ALL_TEAM_MODELS = "all-team-models"
EVERY_MODEL = frozenset({"*", "all-proxy-models"})


def allows(models: list[str], model: str) -> bool:
    """An empty list, `*` or `all-proxy-models` allows every model; `openai/*` patterns match."""
    return (not models or any(m == model or m in EVERY_MODEL or ("*" in m and matches_pattern(m, model))
                              for m in models))


def denial(kind: str, models: list[str], model: str) -> ApiError:
    return ApiError(401, f"{kind} not allowed to access model. This {kind} can only access models={models!r}. "
                    f"Tried to access {model}", f"{kind}_model_access_denied", "model")


def team_alias(caller: Caller, model: str) -> str | None:
    """What the caller's team's `model_aliases` (LiteLLM's, kept as given) turn `model` into, if anything."""
    aliases = caller.team.extra.get("model_aliases") if caller.team is not None else None
    target = aliases.get(model) if isinstance(aliases, dict) else None
    return target if isinstance(target, str) and target else None


def check_model_access(caller: Caller, model: str, group_aliases: Mapping[str, str]) -> None:
    """A `model_group_alias` is allowed wherever the group it names is (LiteLLM's rule), and by its own name.
    A team's alias is judged by the model it names."""
    key = caller.key
    if key is None or model in key.aliases:
        return  # the master key, an open proxy, or an alias the admin put on this very key
    model = team_alias(caller, model) or model
    target = group_aliases.get(model)
    names = (model,) if target is None else (model, target)
    team_models = caller.team.models if caller.team is not None else []
    key_models = team_models if ALL_TEAM_MODELS in key.models else key.models
    if not any(allows(key_models, name) for name in names):
        raise denial("key", key_models, model)
    if caller.team is not None and not any(allows(team_models, name) for name in names):
        raise denial("team", team_models, model)


def may_use(caller: Caller, model: str, group_aliases: Mapping[str, str]) -> bool:
    try:
        check_model_access(caller, model, group_aliases)
    except ApiError:
        return False
    return True
