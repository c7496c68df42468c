"""Spend logs at scale: daily totals kept with the records, day partitions and retention, the migration."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from gateway.spend import partitions
from gateway.spend.record import SpendRecord, spool_line
from gateway.spend.upkeep import SpendUpkeep
from gateway.store import migrations
from gateway.store.database import open_database, split_schema
from gateway.store.records import BudgetWindow, KeyRecord
from gateway.store.store import DAILY_DIMENSIONS, KEYS, Store
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment

MASTER = "sk-scale-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
DAY = 86400
PATIENCE = 20.0
GROUPS = {"team": "team_id", "api_key": "api_key", "user": "user_id", "customer": "end_user", "model": "model_group"}


def day_text(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


def random_records(rng: random.Random, count: int, now: float, days: range) -> list[SpendRecord]:
    keys = [f"{i:02x}" * 32 for i in range(5)] + [None]
    records = []
    for _ in range(count):
        group = rng.choice(["gpt-a", "gpt-b", None])
        prompt, completion = rng.randrange(1, 500), rng.randrange(0, 500)
        start = now - rng.choice(days) * DAY - rng.uniform(0, DAY - 1)
        records.append(SpendRecord(
            request_id=uuid.uuid4().hex, api_key=rng.choice(keys), user_id=rng.choice(["u1", "u2", "u3", None]),
            team_id=rng.choice(["t1", "t2", None]), end_user=rng.choice(["acme", "globex", None]),
            model_group=group, model=rng.choice(["alias-a", group]), prompt_tokens=prompt,
            completion_tokens=completion, total_tokens=prompt + completion, spend=rng.choice([0.0, rng.random()]),
            start_time=start, end_time=start + 1.5))
    return records


async def write_with_duplicates(store: Store, rng: random.Random, records: list[SpendRecord]) -> None:
    """In concurrent batches, as several writers would, each record written once or twice (a spool segment
    read again after a crash, a line repeated within a segment)."""
    lines = [spool_line(r) for r in records]
    batches: list[list[bytes]] = [[] for _ in range(4)]
    for line in lines:
        rng.choice(batches).append(line)
        if rng.random() < 0.3:
            rng.choice(batches).append(line)
    for start in range(0, max(len(b) for b in batches), 50):
        await asyncio.gather(*(store.write_spend_lines(b"".join(b[start:start + 50])) for b in batches))


def url_for(backend: str, tmp_path: Path, postgres_base: str | None) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    assert postgres_base is not None
    return f"{postgres_base}{'&' if '?' in postgres_base else '?'}schema=gw_scale_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL of this test's own, on each backend."""
    base = str(request.getfixturevalue("postgres_base")) if request.param == "postgres" else None
    url = url_for(request.param, tmp_path, base)
    yield url
    if base is not None:
        _, schema = split_schema(url)

        async def drop() -> None:
            conn = await asyncpg.connect(base)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())


async def open_store(url: str, tmp_path: Path) -> Store:
    store = Store(await open_database(url, str(tmp_path / "unused.db")))
    await store.start()
    return store


def gateway_on(url: str, **general: Any) -> Gateway:
    config = {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
              "general_settings": {"master_key": MASTER, "database_url": url, **general}}
    return Gateway(config, env={"DATABASE_URL": ""})


@pytest.fixture
def running() -> Iterator[list[Gateway]]:
    started: list[Gateway] = []
    yield started
    for gw in started:
        gw.stop()
        assert "Traceback" not in gw.log(), gw.log()


async def get(http: aiohttp.ClientSession, gw: Gateway, path: str, **params: str) -> Any:
    async with http.get(f"{gw.url}{path}", params=params, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def approx_map(values: dict[Any, Any]) -> dict[Any, Any]:
    return {k: pytest.approx(v) for k, v in values.items()}


async def test_daily_totals_equal_the_log_after_concurrent_writes_with_duplicates(
        database: str, tmp_path: Path) -> None:
    store = await open_store(database, tmp_path)
    try:
        rng = random.Random(13)
        records = random_records(rng, 600, time.time(), range(0, 4))
        await write_with_duplicates(store, rng, records)
        await write_with_duplicates(store, rng, records[:100])  # a whole replay, much later
        row = await store.db.fetchrow("SELECT COUNT(*) AS n, SUM(requests) AS r FROM gw_spend_logs, "
                                      "(SELECT SUM(requests) AS requests FROM gw_spend_daily) d")
        assert row is not None and int(row["n"]) == len(records)
        for group in DAILY_DIMENSIONS:
            kept = await store.spend_by_day({}, None, None, group)
            scanned = await store._spend_by_day_from_log({}, None, None, group)
            assert [(r["day"], r["grp"], r["model_group"], int(r["requests"]), int(r["total_tokens"]))
                    for r in kept] == \
                [(r["day"], r["grp"], r["model_group"], int(r["requests"]), int(r["total_tokens"])) for r in scanned]
            assert [r["spend"] for r in kept] == pytest.approx([r["spend"] for r in scanned])
        for group in DAILY_DIMENSIONS:  # the rollup, which unfiltered totals read, says what the log says
            rolled = await store.spend_totals({}, None, None, group)
            logged = await store.db.fetch(
                f"SELECT {group} AS grp, SUM(spend) AS spend, SUM(total_tokens) AS total_tokens, COUNT(*) AS requests "
                f"FROM gw_spend_logs WHERE {group} IS NOT NULL GROUP BY {group}")
            assert {r["grp"]: (int(r["requests"]), int(r["total_tokens"])) for r in rolled} == \
                {r["grp"]: (int(r["requests"]), int(r["total_tokens"])) for r in logged}
            assert {r["grp"]: r["spend"] for r in rolled} == approx_map({r["grp"]: r["spend"] for r in logged})
            assert [r["spend"] for r in rolled] == sorted((r["spend"] for r in rolled), reverse=True)
        filtered = await store.spend_by_day({"api_key": records[0].api_key}, records[0].start_time,
                                            records[0].start_time + 1, "user_id")
        assert {r["day"] for r in filtered} == {day_text(records[0].start_time)}
    finally:
        await store.close()


def expected_reports(records: list[SpendRecord]) -> dict[str, Any]:
    """What the report endpoints answered when they grouped the log itself."""
    report: dict[str, Any] = {}
    for group_by, column in GROUPS.items():
        days: dict[str, dict[str, list[float]]] = defaultdict(dict)
        for r in records:
            entry = days[day_text(r.start_time)].setdefault(getattr(r, column) or "Unassigned", [0.0, 0, 0])
            entry[0] += r.spend
            entry[1] += r.total_tokens
            entry[2] += 1
        report[group_by] = {d: {n: (pytest.approx(v[0]), v[1], v[2]) for n, v in e.items()} for d, e in days.items()}
    summary: dict[str, Any] = {}
    for r in records:
        day = summary.setdefault(day_text(r.start_time), {"spend": 0.0, "models": defaultdict(float),
                                                            "users": defaultdict(float)})
        day["spend"] += r.spend
        day["models"][r.model_group or "unknown"] += r.spend
        day["users"][r.user_id or "unknown"] += r.spend
    report["summary"] = {d: (pytest.approx(v["spend"]), approx_map(v["models"]), approx_map(v["users"]))
                         for d, v in summary.items()}
    for name, column in (("keys", "api_key"), ("models", "model"), ("teams", "team_id"), ("end_users", "end_user")):
        totals: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for r in records:
            value = getattr(r, column)
            if value is not None or name == "teams":
                totals[value or "Unassigned"] += r.spend
                counts[value or "Unassigned"] += 1
        report[name] = approx_map(totals)
        report[f"{name}_count"] = dict(counts)
    return report


async def test_report_endpoints_answer_as_the_log_does(database: str, tmp_path: Path, http: aiohttp.ClientSession,
                                                       running: list[Gateway]) -> None:
    now = time.time()
    store = await open_store(database, tmp_path)
    rng = random.Random(7)
    records = random_records(rng, 400, now, range(0, 5))
    try:
        await write_with_duplicates(store, rng, records)
    finally:
        await store.close()
    gw = gateway_on(database).start()
    running.append(gw)
    expected = expected_reports(records)
    first, last = day_text(now - 5 * DAY), day_text(now)
    for group_by in GROUPS:
        report = await get(http, gw, "/global/spend/report", start_date=first, end_date=last, group_by=group_by)
        plural = {"team": "teams", "api_key": "api_keys", "user": "users", "customer": "customers",
                  "model": "models"}[group_by]
        label = {"team": "team_name", "user": "user", "customer": "customer"}.get(group_by, group_by)
        got = {d["group_by_day"]: {e[label]: (e["total_spend"], e["total_tokens"], e["requests"])
                                   for e in d[plural]} for d in report}
        assert got == expected[group_by], group_by
    summary = await get(http, gw, "/spend/logs", start_date=first, end_date=last)
    assert {d["startTime"]: (d["spend"], d["models"], d["users"]) for d in summary} == expected["summary"]
    keys = await get(http, gw, "/global/spend/keys", limit="100")
    assert {k["api_key"]: k["total_spend"] for k in keys} == expected["keys"]
    assert [k["total_spend"] for k in keys] == sorted((k["total_spend"] for k in keys), reverse=True)
    models = await get(http, gw, "/global/spend/models", limit="100")
    assert {m["model"]: m["total_spend"] for m in models} == expected["models"]
    teams = await get(http, gw, "/global/spend/teams")
    assert {t["team_id"]: t["total_spend"] for t in teams["total_spend_per_team"]} == expected["teams"]
    async with http.post(f"{gw.url}/global/spend/end_users", headers=ADMIN,
                         json={"startTime": f"{first}T00:00:00Z", "endTime": f"{last}T23:59:59Z"}) as r:
        end_users = await r.json()
    assert {e["end_user"]: e["total_spend"] for e in end_users} == expected["end_users"]
    assert {e["end_user"]: e["total_count"] for e in end_users} == expected["end_users_count"]
    assert (await get(http, gw, "/global/all_end_users"))["end_users"] == sorted(expected["end_users"])
    # A key's own records are still listed from the log itself, newest first, as many as asked.
    mine = sorted((r for r in records if r.api_key == records[0].api_key), key=lambda r: -r.start_time)
    listed = await get(http, gw, "/spend/logs", api_key=str(records[0].api_key), summarize="false", limit="5")
    assert [x["request_id"] for x in listed] == [r.request_id for r in mine[:5]]


async def partition_names(url: str) -> set[str]:
    dsn, schema = split_schema(url)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
                                "WHERE p.relname = 'gw_spend_logs' AND n.nspname = $1", schema)
    finally:
        await conn.close()
    return {r["relname"] for r in rows}


async def test_retention_drops_old_days_and_keeps_the_rest(database: str, tmp_path: Path,
                                                           http: aiohttp.ClientSession,
                                                           running: list[Gateway]) -> None:
    now = time.time()
    rng = random.Random(30)
    old = random_records(rng, 60, now, range(35, 41))
    recent = random_records(rng, 60, now, range(0, 26))
    store = await open_store(database, tmp_path)
    try:
        await store.write_spend(old + recent)
        postgres = store.db.dialect == "postgres"
        if postgres:
            # A record that landed in the default partition (a writer that thought its day's partition was there).
            await store.db.execute("INSERT INTO gw_spend_logs_default (request_id, call_type, stream, prompt_tokens, "
                                   "completion_tokens, total_tokens, usage_estimated, spend, start_time, end_time, "
                                   "status, status_code, tags) VALUES ('stray', 'x', FALSE, 0, 0, 0, FALSE, 0, $1, "
                                   "$1, 'success', 200, '[]')", now - 50 * DAY)
    finally:
        await store.close()
    if postgres:
        before = await partition_names(database)
        assert {partitions.name_of(partitions.day_of(r.start_time)) for r in old + recent} <= before
    gw = gateway_on(database, maximum_spend_logs_retention_period="30d").start()
    running.append(gw)
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while True:
        listed = await get(http, gw, "/spend/logs", summarize="false", limit="10000")
        if {x["request_id"] for x in listed} == {r.request_id for r in recent}:
            break
        assert asyncio.get_running_loop().time() < deadline, "retention did not run"
        await asyncio.sleep(0.1)
    if postgres:
        after = await partition_names(database)
        assert not {partitions.name_of(partitions.day_of(r.start_time)) for r in old} & after
        assert {partitions.name_of(partitions.day_of(r.start_time)) for r in recent} <= after
        today = partitions.day_of(time.time())
        assert {partitions.name_of(today + 1), partitions.name_of(today + 2)} <= after  # made ahead
    # The daily totals outlive the records: reports on the old days still answer.
    oldest = min(old, key=lambda r: r.start_time)
    report = await get(http, gw, "/global/spend/report", start_date=day_text(oldest.start_time),
                       end_date=day_text(oldest.start_time), group_by="api_key")
    assert sum(e["requests"] for d in report for e in d["api_keys"]) == \
        sum(1 for r in old if day_text(r.start_time) == day_text(oldest.start_time))


async def test_upkeep_runs_retention_on_its_interval_by_the_clock_it_is_given(database: str,
                                                                              tmp_path: Path) -> None:
    store = await open_store(database, tmp_path)
    try:
        start = (partitions.day_of(time.time()) + 0.5) * DAY
        clock = [start]
        upkeep = SpendUpkeep(store, "30d", "1d", clock=lambda: clock[0])
        first = SpendRecord(request_id="a", spend=1.0, start_time=start - 31 * DAY)
        second = SpendRecord(request_id="b", spend=2.0, start_time=start - 29.6 * DAY)
        await store.write_spend([first, second])
        await upkeep.run_due()
        assert [r.request_id for r in await store.spend_logs({}, None, None, 10)] == ["b"]
        clock[0] += 3600  # the 1d interval has not come round: nothing more goes, though "b" is now 30 days old
        await upkeep.run_due()
        assert [r.request_id for r in await store.spend_logs({}, None, None, 10)] == ["b"]
        clock[0] = start + DAY
        await upkeep.run_due()
        assert await store.spend_logs({}, None, None, 10) == []
        if store.db.dialect == "postgres":
            names = {r["name"] for r in await store.db.fetch(
                "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'gw_spend_logs'::regclass")}
            day = partitions.day_of(clock[0])
            assert {partitions.name_of(day + i) for i in range(3)} <= names
            assert partitions.name_of(partitions.day_of(second.start_time)) not in names
    finally:
        await store.close()


async def test_a_day_left_in_the_default_partition_gets_its_own(postgres_url: str, tmp_path: Path) -> None:
    store = await open_store(postgres_url, tmp_path)
    try:
        moment = time.time() - 100 * DAY
        await store.db.execute("INSERT INTO gw_spend_logs_default (request_id, call_type, stream, prompt_tokens, "
                               "completion_tokens, total_tokens, usage_estimated, spend, start_time, end_time, "
                               "status, status_code, tags) VALUES ('early', 'x', FALSE, 0, 0, 0, FALSE, 0, $1, $1, "
                               "'success', 200, '[]')", moment)
        assert await store.write_spend([SpendRecord(request_id="late", start_time=moment + 1)]) == 1
        rows = await store.db.fetch("SELECT request_id, tableoid::regclass::text AS part FROM gw_spend_logs "
                                    "ORDER BY request_id")
        name = partitions.name_of(partitions.day_of(moment))
        assert [(r["request_id"], r["part"].split(".")[-1]) for r in rows] == [("early", name), ("late", name)]
        # The same line written again is the same record.
        assert await store.write_spend([SpendRecord(request_id="late", start_time=moment + 1)]) == 0
    finally:
        await store.close()


async def test_migration_keeps_every_record_of_a_database_from_before(
        database: str, tmp_path: Path, http: aiohttp.ClientSession, running: list[Gateway],
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    records = random_records(random.Random(9), 150, now, range(0, 6))
    monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in migrations.MIGRATIONS if m[0] <= 9])
    db = await open_database(database, str(tmp_path / "unused.db"))
    try:
        assert await migrations.migrate(db) == 9
        columns = migrations.SPEND_LOG_NAMES.split(", ")  # the log's columns at version 9
        marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
        for r in records:
            values = [getattr(r, c) if c != "tags" else "[]" for c in columns]
            await db.execute(f"INSERT INTO gw_spend_logs ({', '.join(columns)}) VALUES ({marks})", *values)
    finally:
        await db.close()
    monkeypatch.undo()
    gw = gateway_on(database).start()
    running.append(gw)
    listed = await get(http, gw, "/spend/logs", summarize="false", limit="10000")
    assert {x["request_id"]: x["spend"] for x in listed} == approx_map({r.request_id: r.spend for r in records})
    report = await get(http, gw, "/global/spend/report", start_date=day_text(now - 6 * DAY), end_date=day_text(now),
                       group_by="team")
    got = {d["group_by_day"]: {e["team_name"]: (e["total_spend"], e["total_tokens"], e["requests"])
                               for e in d["teams"]} for d in report}
    assert got == expected_reports(records)["team"]
    if database.startswith("postgres"):
        names = await partition_names(database)
        assert {partitions.name_of(partitions.day_of(r.start_time)) for r in records} <= names


async def test_a_long_budget_window_sums_whole_days_from_the_daily_totals(store: Store) -> None:
    now = time.time()
    token, older = "b" * 64, "c" * 64
    window = BudgetWindow(budget_duration="30d", max_budget=100.0, reset_at=now + 20 * DAY + 1234.5)
    await store.insert(KEYS, KeyRecord(token=token, key_name="sk-...bbbb", budget_limits=[window]))
    await store.db.execute("INSERT INTO gw_key_successors (token, successor) VALUES ($1, $2)", older, token)
    start = now - 10 * DAY + 1234.5
    moments = [start - 60, start + 1, start + 3600, now - 5 * DAY, now - DAY, now - 1, start - 2 * DAY]
    records = [SpendRecord(request_id=f"w{i}", api_key=token if i % 3 else older, spend=float(2 ** i),
                           start_time=moment) for i, moment in enumerate(moments)]
    await store.write_spend(records + [SpendRecord(request_id="other", api_key="d" * 64, spend=999.0,
                                                   start_time=now - DAY)])
    key = await store.key_for_requests(token)
    assert key is not None
    assert key.window_spend == {"30d": sum(r.spend for r in records if r.start_time >= start)}


async def test_two_gateways_writing_at_once_keep_the_daily_totals_equal_to_their_records(
        database: str, upstream: FakeUpstream, http: aiohttp.ClientSession, running: list[Gateway]) -> None:
    """Two instances on one database, their writers adding to the same daily rows, keys and end users in
    batches that overlap in time: every total still equals the sum of the records."""
    config = {"model_list": [deployment("cheap", upstream.base_url, input_cost_per_token=0.001,
                                        output_cost_per_token=0.002),
                             deployment("dear", upstream.base_url, input_cost_per_token=0.01,
                                        output_cost_per_token=0.03)],
              "general_settings": {"master_key": MASTER, "database_url": database}}
    pair = [Gateway(config, env={"DATABASE_URL": ""}).start() for _ in range(2)]
    running.extend(pair)
    keys = []
    for i in range(3):
        async with http.post(f"{pair[0].url}/key/generate", json={"user_id": f"u{i % 2}"}, headers=ADMIN) as r:
            assert r.status == 200, await r.text()
            keys.append(await r.json())
    slots = asyncio.Semaphore(16)

    async def chat(i: int) -> None:
        body: dict[str, Any] = {"model": ("cheap", "dear")[i % 2], "messages": [{"role": "user", "content": "hi"}],
                                "stream": i % 5 == 0}
        if i % 3:
            body["user"] = ("acme", "globex")[i % 3 - 1]
        async with slots, http.post(f"{pair[i % 2].url}/v1/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {keys[i // 2 % 3]['key']}"}) as r:
            assert r.status == 200, await r.text()
            await r.read()

    sent = 600
    await asyncio.gather(*(chat(i) for i in range(sent)))
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while len(records := await get(http, pair[1], "/spend/logs", summarize="false", limit="10000")) < sent:
        assert asyncio.get_running_loop().time() < deadline, f"{sent - len(records)} records never arrived"
        await asyncio.sleep(0.2)
    assert len(records) == len({r["request_id"] for r in records}) == sent
    days = sorted({r["startTime"][:10] for r in records})
    for group_by, field, label in (("api_key", "api_key", "api_key"), ("customer", "end_user", "customer"),
                                   ("model", "model_group", "model")):
        expected: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0.0, 0, 0])
        for r in records:
            entry = expected[(r["startTime"][:10], r[field] or "Unassigned")]
            entry[0] += r["spend"]
            entry[1] += r["total_tokens"]
            entry[2] += 1
        plural = {"api_key": "api_keys", "customer": "customers", "model": "models"}[group_by]
        report = await get(http, pair[0], "/global/spend/report", start_date=days[0], end_date=days[-1],
                           group_by=group_by)
        got = {(d["group_by_day"], e[label]): (e["total_spend"], e["total_tokens"], e["requests"])
               for d in report for e in d[plural]}
        assert got == {k: (pytest.approx(v[0]), v[1], v[2]) for k, v in expected.items()}, group_by
    for key in keys:
        async with http.get(f"{pair[1].url}/key/info", params={"key": key["key"]}, headers=ADMIN) as r:
            spent = float((await r.json())["info"]["spend"])
        assert spent == pytest.approx(sum(r["spend"] for r in records if r["api_key"] == key["token"]))
    for user in ("acme", "globex"):
        async with http.get(f"{pair[0].url}/customer/info", params={"end_user_id": user}, headers=ADMIN) as r:
            spent = float((await r.json())["spend"])
        assert spent == pytest.approx(sum(r["spend"] for r in records if r["end_user"] == user))


async def test_an_end_user_named_empty_is_kept_apart_from_none(database: str, tmp_path: Path) -> None:
    """The daily totals count an end user '' as none; the end users' own totals keep '' as one of them."""
    store = await open_store(database, tmp_path)
    try:
        now = time.time()
        await store.write_spend([SpendRecord(request_id="blank", end_user="", spend=1.5, start_time=now),
                                 SpendRecord(request_id="none", spend=2.0, start_time=now),
                                 SpendRecord(request_id="named", end_user="acme", spend=4.0, start_time=now)])
        spent = {r["user_id"]: r["spend"] for r in await store.db.fetch("SELECT user_id, spend FROM gw_end_users")}
        assert spent == {"": 1.5, "acme": 4.0}
        daily = {r["grp"]: (r["spend"], r["requests"]) for r in await store.spend_by_day({}, None, None, "end_user")}
        assert daily == {None: (3.5, 2), "acme": (4.0, 1)}
    finally:
        await store.close()
