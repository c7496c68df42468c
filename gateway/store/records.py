"""What the store keeps: keys, users and teams, under LiteLLM's field names.

Times are epoch seconds here and ISO 8601 on the wire.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Record(msgspec.Struct, kw_only=True):
    created_at: float = 0.0
    updated_at: float = 0.0


class KeyRecord(Record):
    token: str  # SHA-256 of the raw key, hex; the raw key is never stored
    key_name: str  # "sk-...abcd": enough to recognise a key, not to use it
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    models: list[str] = []
    aliases: dict[str, str] = {}
    max_budget: float | None = None
    soft_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    expires: float | None = None
    metadata: dict[str, Any] = {}
    tags: list[str] = []
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    max_parallel_requests: int | None = None
    model_max_budget: dict[str, Any] = {}
    model_rpm_limit: dict[str, int] = {}
    model_tpm_limit: dict[str, int] = {}
    blocked: bool = False
    spend: float = 0.0
    created_by: str | None = None


class UserRecord(Record):
    user_id: str
    user_alias: str | None = None
    user_email: str | None = None
    user_role: str = "internal_user"
    teams: list[str] = []
    models: list[str] = []
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    max_parallel_requests: int | None = None
    metadata: dict[str, Any] = {}
    spend: float = 0.0


class TeamMember(msgspec.Struct, kw_only=True):
    role: str = "user"
    user_id: str | None = None
    user_email: str | None = None


class TeamRecord(Record):
    team_id: str
    team_alias: str | None = None
    models: list[str] = []
    members_with_roles: list[TeamMember] = []
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    max_parallel_requests: int | None = None
    metadata: dict[str, Any] = {}
    blocked: bool = False
    spend: float = 0.0
    from_config: bool = False  # declared under `teams:` in config.yaml; the file wins at each start
