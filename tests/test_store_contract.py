"""One contract, two backends: the Store behaves the same on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.store.database import SQLiteDatabase
from gateway.store.migrations import MIGRATIONS, migrate
from gateway.store.records import KeyRecord, TeamMember, TeamRecord, UserRecord
from gateway.store.store import KEYS, TEAMS, USERS, Conflict, Store

NEWEST = MIGRATIONS[-1][0]


def key(token: str, **fields: object) -> KeyRecord:
    return KeyRecord(token=token, key_name=f"sk-...{token[-4:]}", **fields)  # type: ignore[arg-type]


async def test_insert_then_get_returns_every_field(store: Store) -> None:
    record = key("a" * 64, key_alias="alpha", models=["gpt-4o", "echo"], aliases={"gpt-4": "echo"},
                 max_budget=12.5, metadata={"owner": {"name": "x"}, "n": [1, 2]}, tags=["t1"], tpm_limit=10,
                 model_rpm_limit={"echo": 3}, blocked=True, expires=time.time() + 60)
    stored = await store.insert(KEYS, record)
    assert stored.created_at > 0 and stored.updated_at == stored.created_at
    assert await store.get(KEYS, "a" * 64) == stored
    assert await store.get(KEYS, "b" * 64) is None


async def test_unique_token_and_alias(store: Store) -> None:
    await store.insert(KEYS, key("1" * 64, key_alias="same"))
    with pytest.raises(Conflict):
        await store.insert(KEYS, key("1" * 64))
    with pytest.raises(Conflict):
        await store.insert(KEYS, key("2" * 64, key_alias="same"))
    await store.insert(KEYS, key("3" * 64))
    await store.insert(KEYS, key("4" * 64))  # many keys may have no alias
    with pytest.raises(Conflict):
        await store.update(KEYS, "3" * 64, {"key_alias": "same"})


async def test_find_filters_pages_and_counts(store: Store) -> None:
    for i in range(5):
        await store.insert(KEYS, key(f"{i:064d}", user_id="u1" if i < 3 else "u2", team_id="t"))
    page, total = await store.find(KEYS, {"user_id": "u1"}, offset=0, limit=2)
    assert total == 3 and len(page) == 2
    rest, _ = await store.find(KEYS, {"user_id": "u1"}, offset=2, limit=2)
    assert {r.token for r in page} | {r.token for r in rest} == {f"{i:064d}" for i in range(3)}
    both, total = await store.find(KEYS, {"user_id": ["u1", "u2"], "team_id": "t"})
    assert total == 5 and len(both) == 5
    assert await store.find(KEYS, {"user_id": []}) == ([], 0)
    with pytest.raises(ValueError):
        await store.find(KEYS, {"no_such_column": 1})


async def test_update_changes_only_what_it_names(store: Store) -> None:
    await store.insert(KEYS, key("5" * 64, models=["a"], max_budget=1.0))
    updated = await store.update(KEYS, "5" * 64, {"models": ["a", "b"], "blocked": True})
    assert updated is not None
    assert updated.models == ["a", "b"] and updated.blocked is True and updated.max_budget == 1.0
    assert await store.update(KEYS, "6" * 64, {"blocked": True}) is None


async def test_delete_reports_what_existed(store: Store) -> None:
    await store.insert(KEYS, key("7" * 64))
    assert await store.delete(KEYS, ["7" * 64, "8" * 64]) == ["7" * 64]
    assert await store.get(KEYS, "7" * 64) is None
    assert await store.delete(KEYS, []) == []


async def test_users_and_teams_round_trip(store: Store) -> None:
    user = await store.insert(USERS, UserRecord(user_id="u-1", user_email="a@b.c", teams=["t-1"], max_budget=3.0))
    team = await store.insert(TEAMS, TeamRecord(team_id="t-1", models=["echo"], members_with_roles=[
        TeamMember(role="admin", user_id="u-1")], from_config=True))
    assert await store.get(USERS, "u-1") == user
    assert await store.get(TEAMS, "t-1") == team
    assert (await store.get(TEAMS, "t-1")).members_with_roles[0].role == "admin"  # type: ignore[union-attr]


async def test_every_write_lands_in_the_change_log(store: Store) -> None:
    start = await store.latest_change()
    await store.insert(KEYS, key("9" * 64))
    await store.update(KEYS, "9" * 64, {"blocked": True})
    await store.insert(TEAMS, TeamRecord(team_id="t-2"))
    await store.delete(KEYS, ["9" * 64])
    seq, changes = await store.changes_since(start, time.time() + 60)
    assert changes == [("key", "9" * 64), ("key", "9" * 64), ("team", "t-2"), ("key", "9" * 64)]
    assert seq == await store.latest_change() > start
    assert await store.changes_since(seq, time.time() + 60) == (seq, [])
    # The recent window re-reads what a late committer may have slipped in under `seq`.
    _, recent = await store.changes_since(seq, time.time() - 60)
    assert len(recent) == 4


async def test_replace_key_with_and_without_grace(store: Store) -> None:
    old = await store.insert(KEYS, key("c" * 64, key_alias="rotating", spend=2.0))
    new = key("d" * 64, key_alias="rotating", spend=2.0)
    assert await store.replace_key(old.token, new, old_expires=None) == new
    assert await store.get(KEYS, "c" * 64) is None
    newer = key("e" * 64, key_alias="rotating")
    later = time.time() + 3600
    carried = await store.replace_key(new.token, newer, old_expires=later)
    assert carried is not None and carried.token == newer.token and carried.spend == 2.0  # the old key's spend
    kept = await store.get(KEYS, "d" * 64)
    assert kept is not None and kept.expires == later and kept.key_alias is None
    assert await store.replace_key("f" * 64, key("0" * 64), None) is None


async def test_migrations_are_idempotent_and_safe_to_race(store: Store) -> None:
    assert await migrate(store.db) == NEWEST
    assert await asyncio.gather(*(migrate(store.db) for _ in range(3))) == [NEWEST] * 3
    row = await store.db.fetchrow("SELECT COUNT(*) AS n FROM gw_schema")
    assert row is not None and row["n"] == len(MIGRATIONS)  # one row per migration, whatever the version gaps


async def test_two_sqlite_connections_share_one_file(tmp_path: Path) -> None:
    """What --workers relies on: each worker process has its own connection to the file."""
    path = str(tmp_path / "shared.db")
    first, second = Store(SQLiteDatabase(path)), Store(SQLiteDatabase(path))
    await asyncio.gather(first.start(), second.start())
    await first.insert(KEYS, key("a1" * 32))
    assert await second.get(KEYS, "a1" * 32) is not None
    await second.update(KEYS, "a1" * 32, {"blocked": True})
    assert (await first.get(KEYS, "a1" * 32)).blocked is True  # type: ignore[union-attr]
    await first.close()
    await second.close()


async def test_migration_of_an_empty_database_is_quick(tmp_path: Path) -> None:
    """Not a timing assertion: the migration must not wait on anything (locks, sleeps)."""
    db = SQLiteDatabase(str(tmp_path / "fresh.db"))
    assert await asyncio.wait_for(migrate(db), timeout=30) == NEWEST
    await db.close()


async def test_concurrent_modifies_lose_nothing(store: Store) -> None:
    await store.insert(TEAMS, TeamRecord(team_id="crowded"))

    def add(user_id: str) -> object:
        return lambda team: {"members_with_roles": [*team.members_with_roles, TeamMember(user_id=user_id)]}

    await asyncio.gather(*(store.modify(TEAMS, "crowded", add(f"u{i}")) for i in range(20)))
    team = await store.get(TEAMS, "crowded")
    assert team is not None and sorted(m.user_id or "" for m in team.members_with_roles) == sorted(
        f"u{i}" for i in range(20))
    assert await store.modify(TEAMS, "absent", add("x")) is None
    assert await store.modify(TEAMS, "crowded", lambda team: None) == team


async def test_delete_where_handles_more_ids_than_one_statement_takes(store: Store) -> None:
    for i in range(30):
        await store.insert(KEYS, key(f"{i:064x}", team_id="bulk"))
    doomed = [f"{i:064x}" for i in range(30)] + [f"{i:064x}" for i in range(1000, 3000)]
    assert sorted(await store.delete(KEYS, doomed)) == [f"{i:064x}" for i in range(30)]
    await store.insert(KEYS, key("f" * 64, team_id="bulk"))
    assert await store.delete_where(KEYS, "team_id", ["bulk", "other"]) == ["f" * 64]


async def test_spend_is_written_once_and_totals_follow(store: Store) -> None:
    from gateway.spend.record import SpendRecord

    await store.insert(KEYS, key("5a" * 32, user_id="u-s", team_id="t-s"))
    await store.insert(USERS, UserRecord(user_id="u-s"))
    await store.insert(TEAMS, TeamRecord(team_id="t-s"))
    batch = [SpendRecord(request_id=f"r{i}", api_key="5a" * 32, user_id="u-s", team_id="t-s", spend=0.25,
                         start_time=time.time(), tags=["x"]) for i in range(4)]
    assert await store.write_spend(batch + batch[:1]) == 4  # a request id twice in one batch counts once
    assert await store.write_spend(batch) == 0  # a segment read again after a crash
    assert await store.write_spend([*batch, SpendRecord(request_id="r9", api_key="5a" * 32, spend=1.0)]) == 1
    stored_key = await store.get(KEYS, "5a" * 32)
    stored_user, stored_team = await store.get(USERS, "u-s"), await store.get(TEAMS, "t-s")
    assert stored_key is not None and stored_key.spend == pytest.approx(2.0)
    assert stored_user is not None and stored_user.spend == pytest.approx(1.0)
    assert stored_team is not None and stored_team.spend == pytest.approx(1.0)
    logs = await store.spend_logs({"api_key": "5a" * 32}, None, None, 100)
    assert sorted(r.request_id for r in logs) == ["r0", "r1", "r2", "r3", "r9"] and logs[-1].tags in (["x"], [])


async def test_records_of_a_regenerated_key_follow_it(store: Store) -> None:
    """Spend records of the old key written after a regeneration (they waited in a spool) count for the
    new key too, through every later regeneration; the new key starts from the old one's stored spend."""
    from gateway.spend.record import SpendRecord

    first, second, third = "71" * 32, "72" * 32, "73" * 32
    await store.insert(KEYS, key(first, spend=1.0))
    replaced = await store.replace_key(first, key(second, spend=0.0), old_expires=time.time() + 60)
    assert replaced is not None and replaced.spend == pytest.approx(1.0)
    await store.write_spend([SpendRecord(request_id="late-1", api_key=first, spend=0.5)])
    assert await store.replace_key(second, key(third), old_expires=None) is not None
    await store.write_spend([SpendRecord(request_id="late-2", api_key=first, spend=0.25),
                             SpendRecord(request_id="late-3", api_key=second, spend=0.125)])
    spends = {token: (await store.get(KEYS, token)) for token in (first, second, third)}
    assert spends[first] is not None and spends[first].spend == pytest.approx(1.75)  # in its grace period
    assert spends[second] is None
    assert spends[third] is not None and spends[third].spend == pytest.approx(1.0 + 0.5 + 0.25 + 0.125)
