"""The request log: spend records, newest first, from the store function /spend/logs reads, filtered by
key, user, team, model, end user, status and time, a page at a time by keyset (the last record's start time
and id), so that a page deep in a million records costs what the first does; and one request's page, with
its tokens, cost, timings and error. A key that is not an admin's sees its own requests only."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from gateway.accounts import hash_key
from gateway.management.spend import log_view
from gateway.spend.record import SpendRecord
from gateway.store.records import KeyRecord
from gateway.store.store import KEYS, SpendCursor
from gateway.ui import paging
from gateway.ui.base import UI, AdminUi, Visit, page

STATUSES = ("success", "failure", "cancelled")
# The filters an admin may set: the name in the page's address, and the spend log's column it narrows.
COLUMNS = {"user": "user_id", "team": "team_id", "model": "model_group", "end_user": "end_user"}
HASHED = re.compile(r"[0-9a-f]{64}")


class Filters(NamedTuple):
    """The filters as typed, kept in the page's links."""

    key: str
    user: str
    team: str
    model: str
    end_user: str
    status: str
    since: str
    until: str

    def kept(self) -> dict[str, str]:
        return {"key": self.key, "user": self.user, "team": self.team, "model": self.model,
                "end_user": self.end_user, "status": self.status, "from": self.since, "to": self.until}


def _filters(query: MultiMapping[str]) -> Filters:
    status = query.get("status", "")
    return Filters(paging.typed(query, "key"), paging.typed(query, "user"), paging.typed(query, "team"),
                   paging.typed(query, "model"), paging.typed(query, "end_user"),
                   status if status in STATUSES else "", paging.typed(query, "from"), paging.typed(query, "to"))


def _moment(text: str) -> float | None:
    """A time typed in the page (a datetime-local field's YYYY-MM-DDTHH:MM, or a date), read as UTC."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _cursor(raw: str | None) -> SpendCursor | None:
    if not raw or ":" not in raw:
        return None
    at, _, request_id = raw.partition(":")
    try:
        return SpendCursor(float(at), request_id)
    except ValueError:
        return None


def _mark(record: SpendRecord) -> str:
    return f"{record.start_time!r}:{record.request_id}"


async def _key_token(ui: AdminUi, text: str) -> str | None:
    """A key as typed (its hash, the key itself, or its alias) to the hash the spend log keeps."""
    if HASHED.fullmatch(text):
        return text
    if text.startswith("sk-"):
        return hash_key(text)
    found, _ = await ui.services.store.find(KEYS, {"key_alias": text}, limit=1)
    return found[0].token if found else None


class Page(NamedTuple):
    records: list[SpendRecord]
    newer: str | None  # the link to the page before (newer records), if there is one
    older: str | None
    paged: bool  # not the first page


@page()
async def list_logs(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    query = request.query
    asked = _filters(query)
    size = paging.whole(query.get("size"), paging.DEFAULT_SIZE, 1, max(paging.PAGE_SIZES))
    where: dict[str, Any] = {}
    problems: list[str] = []
    if visit.who.is_admin:
        where.update({column: value for name, column in COLUMNS.items() if (value := getattr(asked, name))})
        if asked.key:
            token = await _key_token(ui, asked.key)
            if token is None:
                problems.append(f"No key has the alias {asked.key!r}; a deleted key is found by its hash.")
            where["api_key"] = token or asked.key
    else:
        asked = asked._replace(key="", user="", team="", end_user="")
        where.update({column: value for name, column in COLUMNS.items() if (value := getattr(asked, name))})
        where["api_key"] = visit.who.token or ""
    if asked.status:
        where["status"] = asked.status
    start = end = None
    for name, text in (("from", asked.since), ("to", asked.until)):
        try:
            moment = _moment(text) if text else None
        except ValueError:
            problems.append(f"“{text}” is not a time: write it as YYYY-MM-DDTHH:MM (UTC).")
            continue
        start, end = (moment, end) if name == "from" else (start, moment)
    older, newer = _cursor(query.get("older")), _cursor(query.get("newer"))
    found = await _page(ui, where, start, end, size, older, newer)
    kept = {**asked.kept(), "size": str(size) if size != paging.DEFAULT_SIZE else ""}
    keys = await _keys_named(ui, found.records)
    return ui.render(request, "logs.html", visit=visit, records=found.records, keys=keys, filters=asked,
                     size=size, sizes=paging.PAGE_SIZES, statuses=STATUSES, problems=problems,
                     newest=_link(kept, {}) if found.paged else None,
                     newer=_link(kept, {"newer": found.newer}) if found.newer else None,
                     older=_link(kept, {"older": found.older}) if found.older else None,
                     filtered=any(asked.kept().values()))


async def _page(ui: AdminUi, where: dict[str, Any], start: float | None, end: float | None, size: int,
                older: SpendCursor | None, newer: SpendCursor | None) -> Page:
    """A page and where the pages either side start: one record more than shown is read to know if there
    is a page past it."""
    store = ui.services.store
    if newer is not None:
        records = await store.spend_logs(where, start, end, size + 1, after=newer, newer=True)
        more = len(records) > size
        records = records[1:] if more else records
        if records:
            return Page(records, _mark(records[0]) if more else None, _mark(records[-1]), more)
    records = await store.spend_logs(where, start, end, size + 1, after=older)
    more = len(records) > size
    records = records[:size]
    return Page(records, _mark(records[0]) if older is not None and records else None,
                _mark(records[-1]) if more else None, older is not None)


def _link(kept: dict[str, str], cursor: dict[str, str | None]) -> str:
    return "logs?" + urlencode({k: v for k, v in {**kept, **cursor}.items() if v})


async def _keys_named(ui: AdminUi, records: list[SpendRecord]) -> dict[str, KeyRecord]:
    """The keys behind the records that still exist, to link to."""
    tokens = sorted({r.api_key for r in records if r.api_key})
    found, _ = await ui.services.store.find(KEYS, {"token": tokens}) if tokens else ([], 0)
    return {k.token: k for k in found}


@page()
async def show_log(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    where: dict[str, Any] = {"request_id": request.query.get("id", "")}
    try:
        # The record's day partition, found without trying every one.
        where["start_time"] = float(request.query["at"])
    except (KeyError, ValueError):
        pass
    if not visit.who.is_admin:
        where["api_key"] = visit.who.token or ""
    records = await ui.services.store.spend_logs(where, None, None, 2)
    if not records:
        return ui.refuse(request, 404, "No such request", "No request with this id is in the log: it may be "
                         "older than the log keeps, or not one of your key's.", visit)
    record = records[0]
    keys = await _keys_named(ui, [record])
    return ui.render(request, "log.html", visit=visit, r=record, key=keys.get(record.api_key or ""),
                     view=log_view(record), duration_ms=(record.end_time - record.start_time) * 1000)


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/logs", list_logs)
    app.router.add_get(f"{root}/logs/view", show_log)
