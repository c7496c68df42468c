"""End users (LiteLLM's customers): who a request is for, and the budget and limits that apply to them.

The end user is named by the request, not by its key: LiteLLM's standard headers first, then the
configured header, then the body's `user` (and the other places LiteLLM reads it from).

Claude Code's `metadata.user_id` names a session, not a person: a JSON string `{"device_id",
"account_uuid", "session_id"}` (before 2.1, `user_<device>_account_<account>_session_<session>`) with a
new session id every run. Taken whole, as LiteLLM takes it, every session would be an end user of its
own, each with a fresh default budget; the gateway takes its stable part instead, the Claude account
when Claude Code is logged in to one, else the device, so one developer's sessions are one end user.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from gateway.budget.counters import current_period
from gateway.budget.ledger import Counter
from gateway.config import Config
from gateway.limits.buckets import Bucket
from gateway.store.records import BudgetRecord, EndUserRecord

# LiteLLM reads these with no configuration.
STANDARD_HEADERS = ("x-litellm-customer-id", "x-litellm-end-user-id")
CUSTOMER_ROLE = "customer"
MAX_ID_LENGTH = 1024


class EndUser(NamedTuple):
    """A request's end user as the hot path sees it: from memory, never read from the store per request."""

    user_id: str
    record: EndUserRecord | None  # None: never created, nor spent anything yet
    budget: BudgetRecord | None  # its own budget, else the configured default

    @property
    def spend(self) -> float:
        return self.record.spend if self.record is not None else 0.0


def header_names(config: Config) -> tuple[str, ...]:
    """Headers that name the end user, in the order they are read."""
    settings = config.general_settings
    mapped = [str(m["header_name"]).lower() for m in settings.user_header_mappings
              if isinstance(m, dict) and m.get("header_name")
              and str(m.get("litellm_user_role", "")).lower() == CUSTOMER_ROLE]
    if not mapped and settings.user_header_name and settings.user_header_name.strip():
        mapped = [settings.user_header_name.lower()]
    return tuple(dict.fromkeys([*STANDARD_HEADERS, *mapped]))


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


CLAUDE_CODE_LEGACY = re.compile(r"user_([0-9a-f]{64})_account_([0-9a-f-]*)_session_[0-9a-f-]+")


def _metadata_user(value: Any) -> Any:
    """metadata.user_id, Claude Code's reduced to the account or device it names (see the module's doc)."""
    if not isinstance(value, str):
        return value
    if value.startswith("{"):
        parsed = _as_dict(value)
        if isinstance(parsed.get("session_id"), str) and ("device_id" in parsed or "account_uuid" in parsed):
            stable = parsed.get("account_uuid") or parsed.get("device_id")
            return stable if isinstance(stable, str) and stable else value
    elif value.startswith("user_"):
        legacy = CLAUDE_CODE_LEGACY.fullmatch(value)
        if legacy is not None:
            return legacy[2] or legacy[1]
    return value


def end_user_id(headers: Mapping[str, str], body: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None and value.strip():
            return value
    candidates = (body.get("user"), _as_dict(body.get("litellm_metadata")).get("user"),
                  _metadata_user(_as_dict(body.get("metadata")).get("user_id")), body.get("safety_identifier"))
    for value in candidates:
        if value is not None and not isinstance(value, (dict, list)):
            return str(value)
    return None


def default_budget(config: Config) -> BudgetRecord | None:
    """`litellm_settings.max_end_user_budget`, as a budget of no period."""
    amount = config.litellm_settings.max_end_user_budget
    return BudgetRecord(budget_id="", max_budget=amount) if amount is not None else None


def budget_counter(user_id: str, spend: float, budget: BudgetRecord | None, now: float) -> Counter | None:
    """The ledger counter of an end user's budget in the period `now` is in; None without a max_budget."""
    if budget is None or budget.max_budget is None:
        return None
    end, same_period = current_period(budget.budget_reset_at, budget.budget_duration, now)
    return Counter(f"enduser:{user_id}:{end or 'all'}", budget.max_budget, spend if same_period else 0.0, end)


def end_user_counter(end_user: EndUser | None, now: float) -> Counter | None:
    if end_user is None:
        return None
    return budget_counter(end_user.user_id, end_user.spend, end_user.budget, now)


def exceeded_message(counter: Counter, spent: float) -> str:
    user_id = counter.name.split(":", 1)[1].rsplit(":", 1)[0]
    return f"ExceededBudget: End User={user_id} over budget. Spend={spent}, Budget={counter.limit}"


def end_user_limits(end_user: EndUser | None) -> tuple[list[Bucket], list[Bucket], list[tuple[str, int]]]:
    """The rpm, tpm and parallel limits of the end user's budget, for the rate limiter."""
    if end_user is None or end_user.budget is None:
        return [], [], []
    budget, ref = end_user.budget, end_user.user_id
    requests = [Bucket(f"rpm:enduser:{ref}", float(budget.rpm_limit))] if budget.rpm_limit is not None else []
    tokens = [Bucket(f"tpm:enduser:{ref}", float(budget.tpm_limit))] if budget.tpm_limit is not None else []
    slots = [(f"par:enduser:{ref}", budget.max_parallel_requests)] if budget.max_parallel_requests is not None \
        else []
    return requests, tokens, slots
