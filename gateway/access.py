"""Which models a caller may use: its key's `models`, narrowed by its team's and its organization's,
as LiteLLM decides it. An access group's name in a `models` list stands for every model of the group."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.access_groups import EMPTY, AccessGroups
from gateway.errors import ApiError
from gateway.identity import Caller
from gateway.router import matches_pattern

ALL_TEAM_MODELS = "all-team-models"
EVERY_MODEL = frozenset({"*", "all-proxy-models"})


def allows(models: list[str], model: str, groups: Mapping[str, frozenset[str]] | None = None) -> bool:
    """An empty list, `*` or `all-proxy-models` allows every model; `openai/*` patterns match; an access
    group's name allows its models."""
    if not models:
        return True
    for allowed in models:
        if allowed == model or allowed in EVERY_MODEL or ("*" in allowed and matches_pattern(allowed, model)):
            return True
        if groups is not None and model in groups.get(allowed, EMPTY):
            return True
    return False


def denial(kind: str, models: list[str], model: str) -> ApiError:
    return ApiError(401, f"{kind} not allowed to access model. This {kind} can only access models={models!r}. "
                    f"Tried to access {model}", f"{kind}_model_access_denied", "model")


def team_alias(caller: Caller, model: str) -> str | None:
    """What the caller's team's `model_aliases` (LiteLLM's, kept as given) turn `model` into, if anything."""
    aliases = caller.team.extra.get("model_aliases") if caller.team is not None else None
    target = aliases.get(model) if isinstance(aliases, dict) else None
    return target if isinstance(target, str) and target else None


def check_model_access(caller: Caller, model: str, group_aliases: Mapping[str, str], groups: AccessGroups) -> None:
    """A `model_group_alias` is allowed wherever the group it names is (LiteLLM's rule), and by its own name.
    A team's alias is judged by the model it names."""
    key = caller.key
    if key is None or model in key.aliases:
        return  # the master key, an open proxy, or an alias the admin put on this very key
    model = team_alias(caller, model) or model
    target = group_aliases.get(model)
    names = (model,) if target is None else (model, target)
    by_name = groups.by_name
    team = caller.team
    team_models = team.models if team is not None else []
    key_models = team_models if ALL_TEAM_MODELS in key.models else key.models
    if not any(allows(key_models, name, by_name) for name in names):
        # LiteLLM's fallback: groups assigned to the key itself.
        granted = groups.by_key.get(key.token, EMPTY) | groups.granted(key.extra.get("access_group_ids"))
        if not any(name in granted for name in names):
            raise denial("key", key_models, model)
    if team is not None and not any(allows(team_models, name, by_name) for name in names):
        granted = groups.by_team.get(team.team_id, EMPTY) | groups.granted(team.extra.get("access_group_ids"))
        if not any(name in granted for name in names):
            raise denial("team", team_models, model)
    org = caller.org
    if org is not None and not any(allows(org.models, name, by_name) for name in names):
        raise denial("org", org.models, model)


def may_use(caller: Caller, model: str, group_aliases: Mapping[str, str], groups: AccessGroups) -> bool:
    try:
        check_model_access(caller, model, group_aliases, groups)
    except ApiError:
        return False
    return True
