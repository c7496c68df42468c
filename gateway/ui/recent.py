"""The last 30 days of spend of one team, user or key, by model: what their pages show, from the daily
totals /global/spend/report reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from gateway.services import Services

DAYS = 30


class ModelSpend(NamedTuple):
    model: str
    spend: float
    requests: int
    tokens: int


class RecentSpend(NamedTuple):
    days: int
    first: str  # the first UTC day counted, YYYY-MM-DD
    spend: float
    requests: int
    tokens: int
    by_model: list[ModelSpend]


async def recent_spend(svc: Services, where: dict[str, Any]) -> RecentSpend:
    today = datetime.fromtimestamp(svc.clock(), UTC).date()
    first = today - timedelta(days=DAYS - 1)
    start = datetime.combine(first, datetime.min.time(), UTC).timestamp()
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC).timestamp()
    rows = await svc.store.spend_totals(where, start, end, "model_group")
    by_model = [ModelSpend(row["grp"], float(row["spend"]), int(row["requests"]), int(row["total_tokens"]))
                for row in rows]
    return RecentSpend(DAYS, first.isoformat(), sum(m.spend for m in by_model), sum(m.requests for m in by_model),
                       sum(m.tokens for m in by_model), by_model)
