"""What the store keeps (keys, users, teams, end users, budgets, organizations, access groups, models and
credentials), under LiteLLM's field names.

Times are epoch seconds here and ISO 8601 on the wire.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec


class Record(msgspec.Struct, kw_only=True):
    created_at: float = 0.0
    updated_at: float = 0.0


class Limited(Record, kw_only=True):
    """Budget and rate limits, which keys, users and teams all carry."""

    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    max_parallel_requests: int | None = None
    metadata: dict[str, Any] = {}
    spend: float = 0.0
    # LiteLLM's fields the gateway keeps and shows back but does not act on (guardrails, key_type...).
    extra: dict[str, Any] = {}


class BudgetWindow(msgspec.Struct, kw_only=True):
    """One of a key's `budget_limits`: a limit of its own, over a period of its own."""

    budget_duration: str
    max_budget: float
    reset_at: float | None = None  # when this window's period ends and the next starts from zero


class KeyRecord(Limited, kw_only=True):
    # Filled when the key is read for the request path, never stored: each budget window's spend in
    # its current period, as the store's spend logs have it (by budget_duration).
    derived_fields: ClassVar[frozenset[str]] = frozenset({"window_spend"})

    token: str  # SHA-256 of the raw key, hex; the raw key is never stored
    key_name: str  # "sk-...abcd": enough to recognise a key, not to use it
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    models: list[str] = []
    aliases: dict[str, str] = {}
    soft_budget: float | None = None
    expires: float | None = None
    tags: list[str] = []
    model_max_budget: dict[str, Any] = {}
    model_rpm_limit: dict[str, int] = {}
    model_tpm_limit: dict[str, int] = {}
    blocked: bool = False
    created_by: str | None = None
    organization_id: str | None = None
    budget_limits: list[BudgetWindow] = []
    budget_limits_reset_at: float | None = None  # the soonest window reset, for the reset job to find
    auto_rotate: bool = False
    rotation_interval: str | None = None
    key_rotation_at: float | None = None
    last_rotation_at: float | None = None
    rotation_count: int = 0
    window_spend: dict[str, float] = {}


class UserRecord(Limited, kw_only=True):
    user_id: str
    user_alias: str | None = None
    user_email: str | None = None
    user_role: str = "internal_user"
    teams: list[str] = []
    models: list[str] = []


class TeamMember(msgspec.Struct, kw_only=True):
    role: str = "user"
    user_id: str | None = None
    user_email: str | None = None


class TeamRecord(Limited, kw_only=True):
    team_id: str
    team_alias: str | None = None
    models: list[str] = []
    members_with_roles: list[TeamMember] = []
    blocked: bool = False
    from_config: bool = False  # declared under `teams:` in config.yaml; the file wins at each start
    organization_id: str | None = None


class BudgetRecord(Record, kw_only=True):
    """LiteLLM's budget table: limits that end users (and, in LiteLLM, other things) point to by budget_id."""

    budget_id: str
    max_budget: float | None = None
    soft_budget: float | None = None
    max_parallel_requests: int | None = None
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    model_max_budget: dict[str, Any] = {}
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    created_by: str | None = None
    updated_by: str | None = None


class ModelRecord(Record, kw_only=True):
    """A deployment added through /model/new: a model_list entry kept in the store."""

    model_id: str
    model_name: str
    litellm_params: dict[str, Any] = {}
    model_info: dict[str, Any] = {}
    created_by: str | None = None
    updated_by: str | None = None


class OrgMember(msgspec.Struct, kw_only=True):
    """A user's membership of an organization, as LiteLLM's LiteLLM_OrganizationMembership row."""

    user_id: str
    user_role: str = "internal_user"
    spend: float = 0.0
    budget_id: str | None = None
    max_budget_in_organization: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


class OrgRecord(Limited, kw_only=True):
    """An organization: its teams' and keys' models are narrowed to `models`, and their spend counts
    against its budget (LiteLLM keeps the budget in a budget table; here it is on the record)."""

    organization_id: str
    organization_alias: str | None = None
    models: list[str] = []
    budget_id: str | None = None
    members: list[OrgMember] = []
    blocked: bool = False
    created_by: str | None = None
    updated_by: str | None = None


class EndUserRecord(Record, kw_only=True):
    """A customer of the proxy: the `user` a request names, not a key's owner."""

    user_id: str
    alias: str | None = None
    spend: float = 0.0
    allowed_model_region: str | None = None
    default_model: str | None = None
    budget_id: str | None = None
    blocked: bool = False
    extra: dict[str, Any] = {}


class AccessGroupRecord(Record, kw_only=True):
    """A named set of models (MCP servers and agents are kept, not acted on); a key or team whose
    `models` names it, or which it is assigned to, may use its models."""

    access_group_id: str
    access_group_name: str
    description: str | None = None
    access_model_names: list[str] = []
    access_mcp_server_ids: list[str] = []
    access_agent_ids: list[str] = []
    assigned_team_ids: list[str] = []
    assigned_key_ids: list[str] = []
    created_by: str | None = None
    updated_by: str | None = None


class CredentialRecord(Record, kw_only=True):
    """A named set of provider settings (api_key, api_base, api_version) models refer to."""

    credential_name: str
    display_name: str | None = None
    credential_values: dict[str, Any] = {}
    credential_info: dict[str, Any] = {}
    created_by: str | None = None
    updated_by: str | None = None
