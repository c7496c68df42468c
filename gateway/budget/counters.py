"""Which budgets a request falls under, as ledger counters named for their period."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from gateway import durations
from gateway.budget import windows
from gateway.budget.ledger import Counter
from gateway.identity import Caller


def current_period(reset_at: float | None, duration: str | None, now: float) -> tuple[float | None, bool]:
    """The end of the budget period `now` falls in, and whether it is the one the store's spend is for.

    A record whose reset time has passed is in a later period that started from
    zero, whether or not the reset job has caught up with it yet.
    """
    if reset_at is None or not duration:
        return None, True
    end = durations.first_after(reset_at, duration, now)
    return end, end == reset_at


def aligned_period(duration: str | None, now: float) -> float | None:
    """For budgets with no stored reset time: calendar months, or fixed windows since the epoch."""
    if not duration:
        return None
    if duration.strip().endswith("mo"):
        moment = datetime.fromtimestamp(now, UTC)
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        return durations.add(start, duration)
    length = durations.add(0, duration)
    return (math.floor(now / length) + 1) * length


def spend_counter(kind: str, ref: str, reset_at: float | None, duration: str | None,
                  now: float) -> tuple[str, bool]:
    """The name of the counter that holds a key's, user's or team's spend in the period `now` is in,
    and whether the store's spend is for that period too."""
    end, same_period = current_period(reset_at, duration, now)
    return f"{kind}:{ref}:{end or 'all'}", same_period


def _record_counter(kind: str, ref: str, limit: float | None, spend: float, reset_at: float | None,
                    duration: str | None, now: float) -> Counter:
    """With no budget (`limit` None) the counter only keeps the spend current, for the spend header and
    the info routes: it admits everything."""
    end, same_period = current_period(reset_at, duration, now)
    return Counter(f"{kind}:{ref}:{end or 'all'}", math.inf if limit is None else limit,
                   spend if same_period else 0.0, end)


def model_budget(raw: Any) -> tuple[float, str | None] | None:
    """`model_max_budget` entries: a number, or LiteLLM's {budget_limit, time_period}."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw), None
    if isinstance(raw, dict) and isinstance(raw.get("budget_limit"), (int, float)):
        period = raw.get("time_period")
        return float(raw["budget_limit"]), period if isinstance(period, str) else None
    return None


def counters_for(caller: Caller | None, model: str, proxy_budget: float | None, proxy_duration: str | None,
                 now: float) -> list[Counter]:
    found: list[Counter | None] = []
    if proxy_budget is not None:
        end = aligned_period(proxy_duration, now)
        found.append(Counter(f"proxy:{end or 'all'}", proxy_budget, 0.0, end))
    if caller is not None and caller.key is not None:
        key = caller.key
        found.append(_record_counter("key", key.token, key.max_budget, key.spend, key.budget_reset_at,
                                     key.budget_duration, now))
        per_model = model_budget(key.model_max_budget.get(model)) if key.model_max_budget else None
        if per_model is not None:
            limit, period = per_model
            end = aligned_period(period, now)
            found.append(Counter(f"keymodel:{key.token}:{model}:{end or 'all'}", limit, 0.0, end))
        if key.budget_limits:
            found.extend(windows.counters(key, now))
    if caller is not None:
        for kind, ref, record in (("team", caller.team.team_id if caller.team else "", caller.team),
                                  ("user", caller.user.user_id if caller.user else "", caller.user),
                                  ("org", caller.org.organization_id if caller.org else "", caller.org)):
            if record is not None:
                found.append(_record_counter(kind, ref, record.max_budget, record.spend, record.budget_reset_at,
                                             record.budget_duration, now))
    return [c for c in found if c is not None]


def tracks_only(counter: Counter) -> bool:
    return counter.limit == math.inf
