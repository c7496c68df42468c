"""The spend page: totals, a chart by day and the top spenders by key, team, user or model, from the daily
totals the store keeps, through the store functions /global/spend/report and /global/spend/keys read."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.store.store import KEYS
from gateway.ui import paging
from gateway.ui.base import UI, Visit, page
from gateway.ui.chart import SERIES_SHOWN, Series, stacked

GROUPS = {"model_group": "Model", "api_key": "Key", "team_id": "Team", "user_id": "User"}
# What an admin may narrow the spend to: the daily totals' column, and its name in the page's address.
NARROWED = {"api_key": "key", "team_id": "team", "user_id": "user"}
DEFAULT_DAYS = 30
MAX_DAYS = 366
TOP = 20  # rows in the top-spenders table


def _date(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


@page()
async def spend_page(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    store = ui.services.store
    query = request.query
    by = query.get("by", "model_group") if query.get("by") in GROUPS else "model_group"
    today = datetime.fromtimestamp(ui.services.clock(), UTC).date()
    last = _date(query.get("to")) or today
    first = _date(query.get("from")) or last - timedelta(days=DEFAULT_DAYS - 1)
    problem = None
    if first > last or (last - first).days >= MAX_DAYS:
        problem = (f"Pick a range of at most {MAX_DAYS} days that starts before it ends; "
                   f"showing the last {DEFAULT_DAYS}.")
        last, first = today, today - timedelta(days=DEFAULT_DAYS - 1)
    start = datetime.combine(first, datetime.min.time(), UTC).timestamp()
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC).timestamp()
    if visit.who.is_admin:
        narrowed = {column: value for column, name in NARROWED.items() if (value := paging.typed(query, name))}
    else:
        narrowed = {"api_key": visit.who.token or ""}  # a key that is not an admin's sees its own spend
    where: dict[str, Any] = dict(narrowed)
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]

    by_model = await store.spend_by_day(where, start, end, "model_group")
    totals = {"spend": sum(r["spend"] for r in by_model), "requests": sum(int(r["requests"]) for r in by_model),
              "tokens": sum(int(r["total_tokens"]) for r in by_model)}
    top = await store.spend_totals(where, start, end, by, TOP)
    names = await _names(ui, by, [row["grp"] for row in top])
    if by == "model_group":
        series_of: dict[str, dict[str, float]] = {}
        for row in by_model:
            named = row["grp"] or "(none)"
            series_of.setdefault(named, {})[row["day"]] = series_of.get(named, {}).get(row["day"], 0.0) + row["spend"]
        series = sorted((Series(n, d) for n, d in series_of.items()), key=lambda s: -sum(s.by_day.values()))
    else:
        shown = [row["grp"] for row in top[:SERIES_SHOWN]]
        by_value: dict[str, dict[str, float]] = {value: {} for value in shown}
        for r in await store.spend_by_day({**where, by: shown}, start, end, by, by_model=False) if shown else []:
            daily = by_value[r["grp"]]
            daily[r["day"]] = daily.get(r["day"], 0.0) + r["spend"]
        series = [Series(names.get(value, value) or "(none)", by_value[value]) for value in shown]
        day_totals: dict[str, float] = {}
        for r in by_model:
            day_totals[r["day"]] = day_totals.get(r["day"], 0.0) + r["spend"]
        rest = {d: v - sum(s.by_day.get(d, 0.0) for s in series) for d, v in day_totals.items()}
        if any(v > 1e-9 for v in rest.values()):
            series.append(Series("everything else", {d: v for d, v in rest.items() if v > 1e-9}))
    rows = [{"ref": row["grp"], "name": names.get(row["grp"], row["grp"]), "spend": row["spend"],
             "deleted": names.get(row["grp"], "").startswith("deleted key "),
             "requests": int(row["requests"]), "tokens": int(row["total_tokens"])} for row in top]
    kept = {NARROWED[column]: value for column, value in narrowed.items()} if visit.who.is_admin else {}
    return ui.render(request, "spend.html", visit=visit, by=by, groups=GROUPS, first=first.isoformat(),
                     last=last.isoformat(), narrowed=kept, of=_of(kept), totals=totals, chart=stacked(days, series),
                     rows=rows, problem=problem)


def _of(kept: dict[str, str]) -> str:
    """What the spend shown is of, for the page's heading."""
    return " and ".join(f"{'one key' if name == 'key' else f'{name} {value}'}" for name, value in kept.items())


async def _names(ui: Any, by: str, refs: list[str]) -> dict[str, str]:
    """Keys are totalled by hash: shown by alias, or by the abbreviated key."""
    if by != "api_key" or not refs:
        return {}
    found, _ = await ui.services.store.find(KEYS, {"token": refs})
    named = {k.token: k.key_alias or k.key_name for k in found}
    return {ref: named.get(ref) or f"deleted key {ref[:8]}…" for ref in refs}


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/spend", spend_page)
