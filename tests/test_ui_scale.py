"""The admin UI over a store of 100,000 keys and 1,000,000 spend records, on SQLite and on PostgreSQL: the
keys are bulk-inserted through the store, the spend records loaded in bulk (tests/spend_seed.py), and the
pages' times are printed (never asserted: the machine is shared). What is asserted is that each page answers
with the right records, which only a query that reads a page, not the table, does in time."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import asyncpg
import pytest

from gateway.accounts import hash_key, key_name
from gateway.store.database import open_database
from gateway.store.records import (
    AccessGroupRecord,
    BudgetRecord,
    EndUserRecord,
    KeyRecord,
    OrgMember,
    OrgRecord,
    TeamRecord,
    UserRecord,
)
from gateway.store.store import ACCESS_GROUPS, BUDGETS, END_USERS, KEYS, ORGS, Store
from gateway.store.store import TEAMS as TEAMS_TABLE
from gateway.store.store import USERS as USERS_TABLE
from tests import spend_seed
from tests.harness import Gateway
from tests.ui_session import browser_like, page, sign_in

MASTER = "sk-ui-scale-master"
KEY_COUNT = 100_000
TEAMS = 50
USERS = 1000
BATCH = 10_000
END_USERS_SEEN = 1000
BUDGET_COUNT = 20
ORG_COUNT = 10_000
ORGS_WITH_TEAMS = 5  # team n is in org-0000(n % 5): the first five organizations hold ten teams each
ACCESS_GROUP_COUNT = 1000
# A million requests over the last 30 days, made by one key in ten (the first ones far more than the rest).
SPEND = spend_seed.Shape(count=1_000_000, days=30, now=time.time(), active_keys=10_000, users=USERS, teams=TEAMS,
                         end_users=END_USERS_SEEN)


def seeded(n: int, base: float) -> KeyRecord:
    raw = f"sk-seed-{n:06d}"
    return KeyRecord(token=hash_key(raw), key_name=key_name(raw), key_alias=f"seed-{n:06d}",
                     user_id=f"user-{n % USERS:04d}", team_id=f"team-{n % TEAMS:02d}", max_budget=float(n % 100),
                     rpm_limit=60, models=["echo"], blocked=n % 997 == 0, spend=(n % 1000) / 100,
                     created_at=base + n)


async def seed(url: str, tmp: Path) -> tuple[float, float]:
    """The keys, teams, users, end users and budgets through the store; then the spend records. The seconds
    each took."""
    tmp.mkdir(parents=True, exist_ok=True)
    store = Store(await open_database(url, str(tmp / "unused.db")))
    await store.start()
    started = time.perf_counter()
    base = SPEND.now - KEY_COUNT
    await store.insert_many(TEAMS_TABLE, [TeamRecord(team_id=f"team-{n:02d}", team_alias=f"Team {n}",
                                                     organization_id=f"org-{n % ORGS_WITH_TEAMS:05d}")
                                          for n in range(TEAMS)])
    await store.insert_many(ORGS, [OrgRecord(organization_id=f"org-{n:05d}", organization_alias=f"Org {n:05d}",
                                             members=[OrgMember(user_id=f"user-{n % USERS:04d}")], created_at=base + n)
                                   for n in range(ORG_COUNT)])
    await store.insert_many(ACCESS_GROUPS, [AccessGroupRecord(access_group_id=f"ag-{n:04d}",
                                                              access_group_name=f"group-{n:04d}",
                                                              access_model_names=["echo"], created_at=base + n)
                                            for n in range(ACCESS_GROUP_COUNT)])
    await store.insert_many(USERS_TABLE, [UserRecord(user_id=f"user-{n:04d}", user_email=f"user{n}@example.com",
                                                     teams=[f"team-{n % TEAMS:02d}"], created_at=base + n)
                                          for n in range(USERS)])
    await store.insert_many(BUDGETS, [BudgetRecord(budget_id=f"budget-{n:02d}", max_budget=float(10 * n + 10),
                                                   created_at=base + n) for n in range(BUDGET_COUNT)])
    await store.insert_many(END_USERS, [EndUserRecord(user_id=f"cust-{n:04d}", budget_id=f"budget-{n % 20:02d}",
                                                      created_at=base + n) for n in range(END_USERS_SEEN)])
    for first in range(0, KEY_COUNT, BATCH):
        await store.insert_many(KEYS, [seeded(n, base) for n in range(first, first + BATCH)])
    keys_seconds = time.perf_counter() - started
    started = time.perf_counter()
    await spend_seed.load(store, SPEND)
    spend_seconds = time.perf_counter() - started
    await store.close()
    return keys_seconds, spend_seconds


class Seeded(NamedTuple):
    url: str
    keys_seconds: float
    spend_seconds: float


@pytest.fixture(scope="module")
def seeded_stores(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[dict[str, Seeded | str]]:
    """Both stores seeded at once, before any gateway starts (SQLite works in its own thread, PostgreSQL in its
    server), on a loop of their own: a sync fixture runs outside the tests' loop. A backend that cannot be
    seeded has the reason instead."""
    tmp = tmp_path_factory.mktemp("ui-scale")
    urls: dict[str, str] = {"sqlite": f"sqlite:///{tmp / 'keys.db'}"}
    found: dict[str, Seeded | str] = {}
    base = schema = None
    try:
        base = str(request.getfixturevalue("postgres_base"))
        schema = f"gw_ui_{uuid.uuid4().hex[:12]}"
        urls["postgres"] = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    except pytest.skip.Exception as exc:
        found["postgres"] = str(exc)

    async def seed_all() -> list[tuple[float, float]]:
        return list(await asyncio.gather(*(seed(url, tmp / name) for name, url in urls.items())))

    try:
        for (name, url), (keys_seconds, spend_seconds) in zip(urls.items(), asyncio.run(seed_all())):
            found[name] = Seeded(url, keys_seconds, spend_seconds)
        yield found
    finally:
        if base is not None and schema is not None:
            asyncio.run(drop_schema(base, schema))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded_gateway(request: pytest.FixtureRequest, seeded_stores: dict[str, Seeded | str]
                   ) -> Iterator[tuple[str, Gateway, Seeded]]:
    seeded = seeded_stores[request.param]
    if isinstance(seeded, str):
        pytest.skip(seeded)
    with Gateway(config(seeded.url)) as gw:
        yield request.param, gw, seeded


async def drop_schema(base: str, schema: str) -> None:
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def config(url: str) -> dict[str, object]:
    return {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
            "general_settings": {"master_key": MASTER, "database_url": url}}


async def timed(http: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    started = time.perf_counter()
    status, html = await page(http, url)
    assert status == 200, url
    return (time.perf_counter() - started) * 1000, html


def newest(**wanted: Any) -> spend_seed.Seeded:
    """The newest seeded request with these fields, as the request log's first page shows it."""
    for i in range(SPEND.count - 1, -1, -1):
        found = spend_seed.record(SPEND, i)
        if all(getattr(found, name) == value for name, value in wanted.items()):
            return found
    raise AssertionError(f"no seeded request has {wanted}")


def logged(record: spend_seed.Seeded) -> str:
    return f"logs/view?id={record.request_id}&amp;at="


def at_minute(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(moment))


def between(index: int) -> float:
    """A moment half way between the index-th seeded request and the next: which is first is clear."""
    step = SPEND.days * spend_seed.DAY / SPEND.count
    return SPEND.now - step * (SPEND.count - index - 0.5)


async def test_pages_over_a_hundred_thousand_keys_and_a_million_requests(
        seeded_gateway: tuple[str, Gateway, Seeded], capsys: pytest.CaptureFixture[str]) -> None:
    backend, gw, seeded = seeded_gateway
    ui = f"{gw.url}/ui"
    newest_key, oldest_key = KEY_COUNT - 1, 0
    per_day = SPEND.count // SPEND.days
    deep = SPEND.count - 1 - 25 * per_day  # the first request of a page 25 days back
    window_last = SPEND.count - 1 - 19 * per_day  # the last request of a day-long window 20 days back
    checks = {
        "keys, page 1": ("keys", [f"seed-{newest_key:06d}"], "100,000 keys"),
        "keys, last page (offset 99,950)": ("keys?page=2000", [f"seed-{oldest_key:06d}"], "page 2,000 of 2,000"),
        "search an alias piece": ("keys?q=ed-04242", ["seed-042420", "seed-042429"], "10 keys match"),
        "search, no match": ("keys?q=nothing-like-it", [], "0 keys match"),
        "filter by team": ("keys?team=team-07", [f"seed-{newest_key - 42:06d}"], "2,000 keys match"),
        "filter by user": ("keys?user=user-0042", ["seed-099042"], "100 keys match"),
        "blocked only": ("keys?status=blocked", ["seed-099700"], "101 keys match"),
        "team and search, page 3 of 100": ("keys?team=team-07&q=seed&size=100&page=3", [], "page 3 of 20"),
        "one key": (f"keys/{hash_key('sk-seed-050000')}", ["seed-050000", "$0.00"], "team-00"),
        "new key form": ("keys/new", ["team-49", "Team 49"], "Create a key"),
        "teams": ("teams", ["Team 49"], "50 teams"),
        "one team (2,000 keys)": ("teams/view?id=team-07", ["seed-099957"], "Keys (2,000)"),
        "users": ("users", ["user999@example.com"], "1,000 users"),
        "one user (100 keys)": ("users/view?id=user-0042", ["seed-099042"], "Keys (100)"),
        "end users": ("end-users", ["cust-0999"], "1,000 end users"),
        "budgets": ("budgets", ["budget-19"], "20 budgets"),
        "organizations": ("organizations", ["Org 09999"], "10,000 organizations"),
        "organizations, last page": ("organizations?page=200", ["Org 00000"], "page 200 of 200"),
        "search an organization": ("organizations?q=Org+0424", ["Org 04242"], "10 organizations match"),
        "one organization (10 teams)": ("organizations/view?id=org-00000", ["Team 45"], "Teams (10)"),
        "access groups": ("access-groups", ["group-0999"], "1,000 access groups"),
        "access groups, last page": ("access-groups?page=20", ["group-0000"], "page 20 of 20"),
        "spend, 30 days by model": ("spend", ["gpt-4o-mini", "claude-sonnet"], "Top models"),
        "spend, 30 days by key": ("spend?by=api_key", ["seed-000000"], "Top keys"),
        "spend, 30 days by team": ("spend?by=team_id", ["team-00"], "Top teams"),
        "spend of one team by key": ("spend?by=api_key&team=team-07", ["seed-000007"], "team team-07"),
        "requests, newest": ("logs", [logged(spend_seed.record(SPEND, SPEND.count - 1))], "Older"),
        "requests of one key": ("logs?key=seed-000042", [logged(newest(key_alias="seed-000042"))], "seed-000042"),
        "requests of one team": ("logs?team=team-07", [logged(newest(team="team-07"))], "team-07"),
        "requests of an end user": ("logs?end_user=cust-0294", [logged(newest(end_user="cust-0294"))], "cust-0294"),
        "requests, failures": ("logs?status=failure", [logged(newest(status="failure"))], "failure"),
        "requests, one model's failures": ("logs?model=claude-sonnet&status=failure",
                                           [logged(newest(status="failure", model="claude-sonnet"))], "claude-sonnet"),
        "requests of a model with none": ("logs?model=gpt-5-nano", [], "No requests match these filters"),
        "requests, cancelled, of one team": ("logs?status=cancelled&team=team-07",
                                             [logged(newest(status="cancelled", team="team-07"))], "cancelled"),
        "requests, one day 20 days back": (f"logs?from={at_minute(between(window_last) - spend_seed.DAY)}"
                                           f"&to={at_minute(between(window_last))}", [], "Older"),
        "requests, a page 25 days back": (f"logs?older={between(deep)!r}:", [logged(spend_seed.record(SPEND, deep))],
                                          "Newer"),
        "settings": ("settings", ["database_url"], "Settings"),
        "models": ("models", ["echo"], "Deployments"),
    }
    timings: list[tuple[str, float]] = []
    async with browser_like() as http:
        assert (await sign_in(http, ui, MASTER)).status == 303
        await timed(http, f"{ui}/keys")  # the first read warms the store's caches
        for label, (path, present, summary) in checks.items():
            best = float("inf")
            for _ in range(3):
                elapsed, html = await timed(http, f"{ui}/{path}")
                best = min(best, elapsed)
            for text in [*present, summary]:
                assert text in html, (label, text)
            timings.append((label, best))
        # One request's page, by the link the log gives it (its id and start time).
        failed = newest(status="failure")
        _, html = await timed(http, f"{ui}/logs?status=failure")
        link = re.search(rf'href="(logs/view\?id={failed.request_id}&amp;at=[^"]+)"', html)
        assert link is not None
        best = float("inf")
        for _ in range(3):
            elapsed, html = await timed(http, f"{ui}/{link.group(1).replace('&amp;', '&')}")
            best = min(best, elapsed)
        assert "upstream answered 500: overloaded" in html and "of which cached" in html
        timings.append(("one request", best))
    with capsys.disabled():
        print(f"\nadmin UI over {KEY_COUNT:,} keys and {SPEND.count:,} spend records on {backend} (keys seeded in "
              f"{seeded.keys_seconds:.1f} s, spend records in {seeded.spend_seconds:.1f} s, both stores at once), "
              "best of 3:")
        for label, ms in timings:
            print(f"  {label:<36} {ms:7.1f} ms")
