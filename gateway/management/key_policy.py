"""Who may generate which keys: LiteLLM's `general_settings.custom_key_generate` (an async function of
the operator's that may refuse a request) and `litellm_settings.key_generation_settings` (the roles
that may generate team and personal keys, and the fields they must set)."""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.config import Config, ConfigError, KeyGenerationSettings
from gateway.errors import ApiError
from gateway.identity import Caller
from gateway.store.records import TeamRecord

log = logging.getLogger("gateway.management")

Hook = Callable[[Any], Awaitable[Any]]
DEFAULT_REFUSAL = "Authentication Failed - Custom Auth Rule"
# LiteLLM's default for team keys when no team_key_generation is configured.
TEAM_MEMBER_ROLES = ["admin", "user"]


class KeyRequest:
    """The /key/generate body as the custom function sees it, shaped like LiteLLM's GenerateKeyRequest:
    every field an attribute (None when not sent), and the whole as a dict."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._fields.get(name)

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return dict(self._fields)

    dict = model_dump
    json = model_dump


def load_hook(path: str) -> Hook:
    """`module.function`, imported once at start; anything wrong with it stops the start."""
    where = "general_settings.custom_key_generate"
    module_name, _, name = path.strip().rpartition(".")
    if not module_name or not name:
        raise ConfigError(f"{where}: {path!r} is not a dotted path to a function (module.function)")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the operator's to fix
        raise ConfigError(f"{where}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    hook = getattr(module, name, None)
    if hook is None:
        raise ConfigError(f"{where}: module {module_name!r} has no {name!r}")
    if not inspect.iscoroutinefunction(hook):
        raise ConfigError(f"{where}: {path!r} must be an async function (async def), as LiteLLM requires")
    return hook  # type: ignore[no-any-return]


class KeyPolicy:
    def __init__(self, config: Config) -> None:
        path = config.general_settings.custom_key_generate
        self.hook = load_hook(path) if path else None
        self.settings = config.litellm_settings.key_generation_settings

    async def check_custom(self, fields: dict[str, Any]) -> None:
        if self.hook is None:
            return
        try:
            result = await self.hook(KeyRequest(fields))
        except Exception as exc:  # noqa: BLE001 - the operator's code: its failure is a clear 500
            log.warning("custom_key_generate raised %s: %s", type(exc).__name__, exc)
            raise ApiError(500, f"custom_key_generate failed: {type(exc).__name__}: {exc}", "internal_server_error",
                           None) from None
        decision = result.get("decision", True) if isinstance(result, dict) else bool(result)
        if not decision:
            message = result.get("message", DEFAULT_REFUSAL) if isinstance(result, dict) else DEFAULT_REFUSAL
            raise ApiError(403, str(message), "auth_error", None)

    def check_caller(self, who: Caller, fields: dict[str, Any], team: TeamRecord | None) -> None:
        """For a caller who is not an admin, as LiteLLM's key_generation_check and the rule that users
        make keys for themselves only."""
        if who.is_admin:
            return
        user_id = fields.get("user_id")
        if user_id is not None and user_id != who.user_id:
            raise ApiError(403, f"User can only create keys for themselves. Got user_id={user_id}, "
                           f"Your ID={who.user_id}", "auth_error", "user_id")
        settings = self.settings or KeyGenerationSettings()
        team_id = fields.get("team_id")
        if team_id is None:
            personal = settings.personal_key_generation
            if personal is None:
                return
            roles = personal.allowed_user_roles
            if roles is not None and who.role not in roles:
                raise _refused(f"Personal key creation has been restricted by admin. Allowed roles={roles}. "
                               f"Your role={who.role}")
            _required(fields, personal.required_params)
            return
        if team is None:
            raise _refused(f"Unable to find team object in database. Team ID: {team_id}")
        rules = settings.team_key_generation
        if user_id is not None and _member_role(team, user_id) is None:
            raise _refused(f"User={user_id} not assigned to team={team.team_id}")
        role = _member_role(team, who.user_id)
        if role is None:
            raise _refused(f"User={who.user_id} not assigned to team={team.team_id}")
        allowed = rules.allowed_team_member_roles if rules is not None else TEAM_MEMBER_ROLES
        if allowed is not None and role not in allowed:
            raise _refused(f"Team member role {role} not in allowed_team_member_roles={allowed}")
        _required(fields, rules.required_params if rules is not None else None)


def _member_role(team: TeamRecord, user_id: str | None) -> str | None:
    if user_id is None:
        return None
    return next((m.role for m in team.members_with_roles if m.user_id == user_id), None)


def _required(fields: dict[str, Any], required: list[str] | None) -> None:
    for name in required or ():
        if name not in fields:
            raise _refused(f"Required param {name} not in data", name)


def _refused(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "bad_request_error", param)


KEY_POLICY = web.AppKey("key_policy", KeyPolicy)
