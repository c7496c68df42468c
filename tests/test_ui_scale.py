"""The admin UI over a store of 100,000 keys, on SQLite and on PostgreSQL: the keys are bulk-inserted
through the store, and the pages' times are printed (never asserted: the machine is shared). What is
asserted is that each page answers with the right keys, which only a query that reads a page, not the
table, does in time."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from gateway.accounts import hash_key, key_name
from gateway.store.database import open_database
from gateway.store.records import KeyRecord, TeamRecord
from gateway.store.store import KEYS, Store
from gateway.store.store import TEAMS as TEAMS_TABLE
from tests.harness import Gateway
from tests.ui_session import browser_like, page, sign_in

MASTER = "sk-ui-scale-master"
KEY_COUNT = 100_000
TEAMS = 50
USERS = 1000
BATCH = 10_000


def seeded(n: int, base: float) -> KeyRecord:
    raw = f"sk-seed-{n:06d}"
    return KeyRecord(token=hash_key(raw), key_name=key_name(raw), key_alias=f"seed-{n:06d}",
                     user_id=f"user-{n % USERS:04d}", team_id=f"team-{n % TEAMS:02d}", max_budget=float(n % 100),
                     rpm_limit=60, models=["echo"], blocked=n % 997 == 0, spend=(n % 1000) / 100,
                     created_at=base + n)


async def seed(url: str, tmp: Path) -> float:
    store = Store(await open_database(url, str(tmp / "unused.db")))
    await store.start()
    started = time.perf_counter()
    base = time.time() - KEY_COUNT
    await store.insert_many(TEAMS_TABLE, [TeamRecord(team_id=f"team-{n:02d}", team_alias=f"Team {n}")
                                          for n in range(TEAMS)])
    for first in range(0, KEY_COUNT, BATCH):
        await store.insert_many(KEYS, [seeded(n, base) for n in range(first, first + BATCH)])
    await store.close()
    return time.perf_counter() - started


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded_gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[str, Gateway, float]]:
    """Seeded before the gateway starts, on a loop of its own (a sync fixture runs outside the tests' loop)."""
    tmp = tmp_path_factory.mktemp("ui-scale")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'keys.db'}"
        seconds = asyncio.run(seed(url, tmp))
        with Gateway(config(url)) as gw:
            yield request.param, gw, seconds
        return
    base = str(request.getfixturevalue("postgres_base"))
    schema = f"gw_ui_{uuid.uuid4().hex[:12]}"
    url = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    try:
        seconds = asyncio.run(seed(url, tmp))
        with Gateway(config(url)) as gw:
            yield request.param, gw, seconds
    finally:
        asyncio.run(drop_schema(base, schema))


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


async def test_pages_over_a_hundred_thousand_keys(seeded_gateway: tuple[str, Gateway, float],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    backend, gw, seed_seconds = seeded_gateway
    ui = f"{gw.url}/ui"
    newest, oldest = KEY_COUNT - 1, 0
    checks = {
        "keys, page 1": ("keys", [f"seed-{newest:06d}"], "100,000 keys"),
        "keys, last page (offset 99,950)": ("keys?page=2000", [f"seed-{oldest:06d}"], "page 2,000 of 2,000"),
        "search an alias piece": ("keys?q=ed-04242", ["seed-042420", "seed-042429"], "10 keys match"),
        "search, no match": ("keys?q=nothing-like-it", [], "0 keys match"),
        "filter by team": ("keys?team=team-07", [f"seed-{newest - 42:06d}"], "2,000 keys match"),
        "filter by user": ("keys?user=user-0042", ["seed-099042"], "100 keys match"),
        "blocked only": ("keys?status=blocked", ["seed-099700"], "101 keys match"),
        "team and search, page 3 of 100": ("keys?team=team-07&q=seed&size=100&page=3", [], "page 3 of 20"),
        "one key": (f"keys/{hash_key('sk-seed-050000')}", ["seed-050000", "$0.00"], "team-00"),
        "new key form": ("keys/new", ["team-49", "Team 49"], "Create a key"),
        "spend, 30 days by key": ("spend?by=api_key", [], "No spend in this range"),
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
    with capsys.disabled():
        print(f"\nadmin UI over {KEY_COUNT:,} keys on {backend} (seeded in {seed_seconds:.1f} s), best of 3:")
        for label, ms in timings:
            print(f"  {label:<34} {ms:7.1f} ms")
