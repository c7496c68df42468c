"""The Store: keys, users, teams, models and credentials on either database backend, with a change log.

Every write records (kind, id) in `gw_changes` in the same transaction, so
every gateway instance can poll the log and drop what it has cached: a block,
delete or update reaches all of them within one poll interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from gateway import durations
from gateway.budget import windows
from gateway.spend import partitions
from gateway.spend.daily import DIMENSIONS as DAILY_DIMENSIONS
from gateway.spend.daily import DailyDeltas
from gateway.spend.record import COLUMNS as SPEND_COLUMNS
from gateway.spend.record import SpendRecord, rows_of, spend_record, spool_line
from gateway.store.database import Database, Row
from gateway.store.migrations import DAY_OF_START, ROLLUP_COLUMNS, ROLLUP_DIMENSIONS, migrate
from gateway.store.records import (
    AccessGroupRecord,
    BudgetRecord,
    CredentialRecord,
    EndUserRecord,
    KeyRecord,
    ModelRecord,
    OrgRecord,
    Record,
    TeamRecord,
    UserRecord,
)
from gateway.store.spend_postgres import insert_spend

R = TypeVar("R", bound=Record)
# Rows per delete when retention trims SQLite's log: short transactions, so writers are not held up.
RETENTION_BATCH = 5000
# Ids per statement: well under PostgreSQL's 32767 parameters and SQLite's limit.
CHUNK = 500


class SpendCursor(NamedTuple):
    """Where a page of spend records ends: its last record's start time and request id."""

    start_time: float
    request_id: str


class Conflict(Exception):
    """A unique value (an id, a key alias) is taken."""


def _is_conflict(exc: BaseException) -> bool:
    return type(exc).__name__ in ("IntegrityError", "UniqueViolationError")


class Table(Generic[R]):
    def __init__(self, name: str, kind: str, record: type[R], pk: str) -> None:
        self.name = name
        self.kind = kind
        self.record = record
        self.pk = pk
        info = msgspec.inspect.type_info(record)
        assert isinstance(info, msgspec.inspect.StructType)
        derived: frozenset[str] = getattr(record, "derived_fields", frozenset())
        self.columns = [f.name for f in info.fields if f.name not in derived]
        self.json_columns = {
            f.name for f in info.fields
            if f.name not in derived and isinstance(f.type, (msgspec.inspect.ListType, msgspec.inspect.DictType))
        }

    def to_row(self, record: R) -> list[Any]:
        return [self.encode(c, getattr(record, c)) for c in self.columns]

    def encode(self, column: str, value: Any) -> Any:
        return msgspec.json.encode(value).decode() if column in self.json_columns else value

    def from_row(self, row: Row) -> R:
        data = {c: (msgspec.json.decode(row[c]) if c in self.json_columns else row[c]) for c in self.columns}
        return msgspec.convert(data, self.record, strict=False)


KEYS = Table("gw_keys", "key", KeyRecord, "token")
USERS = Table("gw_users", "user", UserRecord, "user_id")
TEAMS = Table("gw_teams", "team", TeamRecord, "team_id")
END_USERS = Table("gw_end_users", "end_user", EndUserRecord, "user_id")
BUDGETS = Table("gw_budgets", "budget", BudgetRecord, "budget_id")
ORGS = Table("gw_organizations", "organization", OrgRecord, "organization_id")
ACCESS_GROUPS = Table("gw_access_groups", "access_group", AccessGroupRecord, "access_group_id")
MODELS = Table("gw_models", "model", ModelRecord, "model_id")
CREDENTIALS = Table("gw_credentials", "credential", CredentialRecord, "credential_name")


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.partition_days: set[int] = set()  # PostgreSQL's day partitions known to exist

    async def start(self) -> None:
        await migrate(self.db)

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.fetchrow("SELECT 1 AS ok")

    async def insert(self, table: Table[R], record: R) -> R:
        now = time.time()
        record = msgspec.structs.replace(record, created_at=record.created_at or now, updated_at=now)
        names = ", ".join(table.columns)
        marks = ", ".join(f"${i + 1}" for i in range(len(table.columns)))
        try:
            async with self.db.transaction() as tx:
                await tx.execute(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", *table.to_row(record))
                await self._log_change(tx, table, getattr(record, table.pk))
        except Exception as exc:
            if _is_conflict(exc):
                raise Conflict(str(exc)) from None
            raise
        return record

    async def insert_many(self, table: Table[R], records: list[R]) -> int:
        """Bulk import: every record, and its change log entry, in one transaction of batched statements
        (a thousand keys made by a script, or a test's hundred thousand). All or none: a taken id or alias
        raises Conflict and nothing is kept."""
        now = time.time()
        rows = [table.to_row(msgspec.structs.replace(r, created_at=r.created_at or now, updated_at=now))
                for r in records]
        names = ", ".join(table.columns)
        marks = ", ".join(f"${i + 1}" for i in range(len(table.columns)))
        try:
            async with self.db.transaction() as tx:
                await tx.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
                await tx.executemany("INSERT INTO gw_changes (kind, ref, at) VALUES ($1, $2, $3)",
                                     [(table.kind, getattr(r, table.pk), now) for r in records])
        except Exception as exc:
            if _is_conflict(exc):
                raise Conflict(str(exc)) from None
            raise
        return len(rows)

    async def get(self, table: Table[R], pk: str) -> R | None:
        row = await self.db.fetchrow(f"SELECT * FROM {table.name} WHERE {table.pk} = $1", pk)
        return table.from_row(row) if row else None

    async def key_for_requests(self, token: str) -> KeyRecord | None:
        """A key as the request path needs it: with the spend of each budget window's current period,
        from the daily totals and the spend logs (its own and those of the keys it was regenerated from)."""
        key = await self.get(KEYS, token)
        if key is None or not key.budget_limits:
            return key
        now = time.time()
        starts = {w.budget_duration: p.start for w in key.budget_limits if (p := windows.period(w, now)).stored}
        if not starts:
            return key
        spent = {name: await self._key_spend_since(token, start, now) for name, start in starts.items()}
        return msgspec.structs.replace(key, window_spend=spent)

    async def _key_spend_since(self, token: str, start: float, now: float) -> float:
        """A key's spend (its own and its predecessors') since `start`: whole UTC days from the daily totals,
        and from the log only the part-days at either end, so a 30-day window reads at most two days of records."""
        keys = "(api_key = $1 OR api_key IN (SELECT token FROM gw_key_successors WHERE successor = $1))"
        first, today = -int(-start // partitions.DAY), partitions.day_of(now)
        if first >= today:
            row = await self.db.fetchrow(
                f"SELECT COALESCE(SUM(spend), 0) AS s FROM gw_spend_logs WHERE start_time >= $2 AND {keys}",
                token, start)
            return float(row["s"]) if row else 0.0
        edges = await self.db.fetchrow(
            f"SELECT COALESCE(SUM(spend), 0) AS s FROM gw_spend_logs WHERE ((start_time >= $2 AND start_time < $3) "
            f"OR start_time >= $4) AND {keys}", token, start, float(first * partitions.DAY),
            float(today * partitions.DAY))
        days = await self.db.fetchrow(
            f"SELECT COALESCE(SUM(spend), 0) AS s FROM gw_spend_daily WHERE day >= $2 AND day < $3 AND {keys}",
            token, partitions.iso_day(first), partitions.iso_day(today))
        return (float(edges["s"]) if edges else 0.0) + (float(days["s"]) if days else 0.0)

    async def find(self, table: Table[R], where: dict[str, Any], offset: int = 0, limit: int | None = None,
                   search: tuple[tuple[str, ...], str] | None = None) -> tuple[list[R], int]:
        """Records whose columns equal `where` (a list value means any of), newest first, and the total.
        `search` is (columns, text): records where any of those columns holds the text, in any case."""
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in where.items():
            if column not in table.columns:
                raise ValueError(f"{table.name} has no column {column}")
            if isinstance(value, (list, tuple)):
                if not value:
                    return [], 0
                marks = ", ".join(f"${len(args) + i + 1}" for i in range(len(value)))
                clauses.append(f"{column} IN ({marks})")
                args.extend(value)
            else:
                args.append(value)
                clauses.append(f"{column} = ${len(args)}")
        if search is not None:
            columns, text = search
            if not columns or any(c not in table.columns for c in columns):
                raise ValueError(f"{table.name} cannot be searched by {columns}")
            # SQLite's LIKE ignores the case of ASCII letters (a LOWER() per row would cost more than the
            # match); on PostgreSQL lower() and LIKE take a third less time than ILIKE.
            postgres = self.db.dialect == "postgres"
            args.append(f"%{like_escaped(text.lower() if postgres else text)}%")
            clauses.append("(" + " OR ".join(f"{f'lower({c})' if postgres else c} LIKE ${len(args)} ESCAPE '\\'"
                                             for c in columns) + ")")
        condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = f"ORDER BY created_at DESC, {table.pk}"
        if search is not None and limit is not None:
            return await self._searched_page(table, condition, order, args, offset, limit)
        total_row = await self.db.fetchrow(f"SELECT COUNT(*) AS n FROM {table.name}{condition}", *args)
        if limit is None:
            rows = await self.db.fetch(f"SELECT * FROM {table.name}{condition} {order}", *args)
        else:
            # The page's ids first, from an index where the table has one that covers the filter (keys do),
            # then only those rows: a deep page or a search does not read every row it passes over.
            rows = await self.db.fetch(
                f"SELECT * FROM {table.name} WHERE {table.pk} IN (SELECT {table.pk} FROM {table.name}{condition} "
                f"{order} LIMIT {int(limit)} OFFSET {int(offset)}) {order}", *args)
        return [table.from_row(r) for r in rows], int(total_row["n"]) if total_row else 0

    async def count_by(self, table: Table[Any], column: str, values: list[str]) -> dict[str, int]:
        """How many records hold each of `values` in `column` (a value none holds is left out): a page's
        key counts, read from an index rather than by loading the keys."""
        if column not in table.columns:
            raise ValueError(f"{table.name} has no column {column}")
        counts: dict[str, int] = {}
        wanted = list(dict.fromkeys(values))
        for first in range(0, len(wanted), CHUNK):
            chunk = wanted[first:first + CHUNK]
            marks = ", ".join(f"${i + 1}" for i in range(len(chunk)))
            for row in await self.db.fetch(f"SELECT {column} AS v, COUNT(*) AS n FROM {table.name} "
                                           f"WHERE {column} IN ({marks}) GROUP BY {column}", *chunk):
                counts[row["v"]] = int(row["n"])
        return counts

    async def _searched_page(self, table: Table[R], condition: str, order: str, args: list[Any], offset: int,
                             limit: int) -> tuple[list[R], int]:
        """A search reads every row it might match, once: the page's ids and the count come from one scan."""
        found = await self.db.fetch(
            f"SELECT {table.pk} AS id, COUNT(*) OVER () AS n FROM {table.name}{condition} {order} "
            f"LIMIT {int(limit)} OFFSET {int(offset)}", *args)
        if not found:
            total_row = await self.db.fetchrow(f"SELECT COUNT(*) AS n FROM {table.name}{condition}", *args) \
                if offset else None
            return [], int(total_row["n"]) if total_row else 0
        ids = [r["id"] for r in found]
        marks = ", ".join(f"${i + 1}" for i in range(len(ids)))
        rows = await self.db.fetch(f"SELECT * FROM {table.name} WHERE {table.pk} IN ({marks}) {order}", *ids)
        return [table.from_row(r) for r in rows], int(found[0]["n"])

    async def update(self, table: Table[R], pk: str, changes: dict[str, Any]) -> R | None:
        changes = {**changes, "updated_at": time.time()}
        unknown = set(changes) - set(table.columns)
        if unknown or table.pk in changes:
            raise ValueError(f"cannot update {sorted(unknown | ({table.pk} & set(changes)))} of {table.name}")
        sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(changes))
        try:
            async with self.db.transaction() as tx:
                touched = await tx.execute(f"UPDATE {table.name} SET {sets} WHERE {table.pk} = $1", pk,
                                           *(table.encode(c, v) for c, v in changes.items()))
                if not touched:
                    return None
                await self._log_change(tx, table, pk)
                row = await tx.fetchrow(f"SELECT * FROM {table.name} WHERE {table.pk} = $1", pk)
        except Exception as exc:
            if _is_conflict(exc):
                raise Conflict(str(exc)) from None
            raise
        return table.from_row(row) if row else None

    async def modify(self, table: Table[R], pk: str,
                     change: Callable[[R], dict[str, Any] | None]) -> R | None:
        """Read, change and write one record as one step: `change` sees the stored record and
        returns the columns to set (None for nothing). Concurrent modifiers of the same record
        queue up (a row lock on PostgreSQL, the write lock on SQLite), so none is lost."""
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(f"SELECT * FROM {table.name} WHERE {table.pk} = $1{lock}", pk)
            if row is None:
                return None
            current = table.from_row(row)
            changes = change(current)
            if not changes:
                return current
            changes = {**changes, "updated_at": time.time()}
            sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(changes))
            await tx.execute(f"UPDATE {table.name} SET {sets} WHERE {table.pk} = $1", pk,
                             *(table.encode(c, v) for c, v in changes.items()))
            await self._log_change(tx, table, pk)
            updated = await tx.fetchrow(f"SELECT * FROM {table.name} WHERE {table.pk} = $1", pk)
        return table.from_row(updated) if updated else None

    async def delete_where(self, table: Table[R], column: str, values: list[str]) -> list[str]:
        """Delete every record whose `column` is one of `values`; the ids deleted."""
        if column not in table.columns:
            raise ValueError(f"{table.name} has no column {column}")
        deleted: list[str] = []
        for start in range(0, len(values), CHUNK):
            part = values[start:start + CHUNK]
            marks = ", ".join(f"${i + 1}" for i in range(len(part)))
            async with self.db.transaction() as tx:
                rows = await tx.fetch(f"SELECT {table.pk} AS pk FROM {table.name} WHERE {column} IN ({marks})", *part)
                found = [r["pk"] for r in rows]
                if found:
                    await tx.execute(f"DELETE FROM {table.name} WHERE {column} IN ({marks})", *part)
                    for pk in found:
                        await self._log_change(tx, table, pk)
            deleted.extend(found)
        return deleted

    async def delete(self, table: Table[R], pks: list[str]) -> list[str]:
        """Delete these records; the ids that existed."""
        return await self.delete_where(table, table.pk, pks)

    async def replace_key(self, old_token: str, new: KeyRecord, old_expires: float | None) -> KeyRecord | None:
        """Regeneration: the new key takes the old one's place; the old one goes now, or when its grace ends.

        The new key starts from the old one's spend as the store has it inside this transaction (the row
        locked), and records of the old key written later count for the new one too (gw_key_successors),
        so no spend is lost to records still in the spool."""
        async with self.db.transaction() as tx:
            lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
            row = await tx.fetchrow(f"SELECT spend FROM {KEYS.name} WHERE token = $1{lock}", old_token)
            if row is None:
                return None
            new = msgspec.structs.replace(new, spend=float(row["spend"]))
            await tx.execute("UPDATE gw_key_successors SET successor = $2 WHERE successor = $1", old_token, new.token)
            await tx.execute("INSERT INTO gw_key_successors (token, successor) VALUES ($1, $2) "
                             "ON CONFLICT (token) DO UPDATE SET successor = excluded.successor", old_token, new.token)
            if old_expires is None:
                touched = await tx.execute(f"DELETE FROM {KEYS.name} WHERE token = $1", old_token)
            else:
                touched = await tx.execute(
                    f"UPDATE {KEYS.name} SET expires = $2, key_alias = NULL, updated_at = $3 WHERE token = $1",
                    old_token, old_expires, time.time())
            if not touched:
                return None
            names = ", ".join(KEYS.columns)
            marks = ", ".join(f"${i + 1}" for i in range(len(KEYS.columns)))
            await tx.execute(f"INSERT INTO {KEYS.name} ({names}) VALUES ({marks})", *KEYS.to_row(new))
            await self._log_change(tx, KEYS, old_token)
            await self._log_change(tx, KEYS, new.token)
        return new

    async def reset_due_budgets(self, now: float) -> int:
        """Start a new budget period for every key, user and team whose reset time has come:
        spend back to 0 and the next reset time set. Safe to run on every instance at once: a
        record is reset only while its stored reset time is still the one read."""
        count = 0
        for table in (KEYS, USERS, TEAMS, ORGS):
            rows = await self.db.fetch(
                f"SELECT {table.pk} AS pk, budget_reset_at, budget_duration FROM {table.name} "
                "WHERE budget_reset_at IS NOT NULL AND budget_reset_at <= $1 AND budget_duration IS NOT NULL",
                now)
            for row in rows:
                following = durations.first_after(row["budget_reset_at"], row["budget_duration"], now)
                async with self.db.transaction() as tx:
                    touched = await tx.execute(
                        f"UPDATE {table.name} SET spend = 0, budget_reset_at = $1, updated_at = $2 "
                        f"WHERE {table.pk} = $3 AND budget_reset_at = $4",
                        following, now, row["pk"], row["budget_reset_at"])
                    if touched:
                        await self._log_change(tx, table, row["pk"])
                        count += touched
        return count + await self._reset_end_user_budgets(now) + await self._reset_due_windows(now)

    async def _reset_end_user_budgets(self, now: float) -> int:
        """Budgets whose period is over: the next reset time set, and their end users' spend back to 0."""
        count = 0
        rows = await self.db.fetch(
            "SELECT budget_id, budget_reset_at, budget_duration FROM gw_budgets WHERE budget_reset_at IS NOT NULL "
            "AND budget_reset_at <= $1 AND budget_duration IS NOT NULL", now)
        for row in rows:
            following = durations.first_after(row["budget_reset_at"], row["budget_duration"], now)
            async with self.db.transaction() as tx:
                touched = await tx.execute(
                    "UPDATE gw_budgets SET budget_reset_at = $1, updated_at = $2 WHERE budget_id = $3 "
                    "AND budget_reset_at = $4", following, now, row["budget_id"], row["budget_reset_at"])
                if not touched:
                    continue
                await self._log_change(tx, BUDGETS, row["budget_id"])
                users = await tx.fetch("SELECT user_id FROM gw_end_users WHERE budget_id = $1", row["budget_id"])
                await tx.execute("UPDATE gw_end_users SET spend = 0, updated_at = $2 WHERE budget_id = $1",
                                 row["budget_id"], now)
                for user in users:
                    await self._log_change(tx, END_USERS, user["user_id"])
                count += len(users)
        return count

    async def _reset_due_windows(self, now: float) -> int:
        """Keys' budget windows whose reset time has come start their next period. Each key is read and
        written under its row lock, so instances running this together move each window once."""
        rows = await self.db.fetch("SELECT token FROM gw_keys WHERE budget_limits_reset_at IS NOT NULL AND "
                                   "budget_limits_reset_at <= $1", now)
        count = 0
        for row in rows:
            moved = False

            def advance(key: KeyRecord) -> dict[str, Any] | None:
                nonlocal moved
                following = windows.advanced(key.budget_limits, now)
                if following is None:
                    return None
                moved = True
                return {"budget_limits": following, "budget_limits_reset_at": windows.soonest(following)}

            await self.modify(KEYS, row["token"], advance)
            count += moved
        return count

    async def due_rotations(self, now: float) -> list[str]:
        rows = await self.db.fetch("SELECT token FROM gw_keys WHERE key_rotation_at IS NOT NULL AND "
                                   "key_rotation_at <= $1 ORDER BY key_rotation_at", now)
        return [r["token"] for r in rows]

    async def claim_rotation(self, token: str, now: float) -> KeyRecord | None:
        """The key, if its rotation is due and this caller is the one to do it: the rotation time is
        cleared in the same locked step, so of instances that find a key due together, one rotates it."""
        claimed: KeyRecord | None = None

        def claim(key: KeyRecord) -> dict[str, Any] | None:
            nonlocal claimed
            if key.key_rotation_at is None or key.key_rotation_at > now:
                return None
            claimed = key
            return {"key_rotation_at": None}

        await self.modify(KEYS, token, claim)
        return claimed

    async def write_spend(self, records: list[SpendRecord]) -> int:
        return await self.write_spend_lines(b"".join(spool_line(r) for r in records))

    async def write_spend_lines(self, lines: bytes) -> int:
        """Insert spooled records once each (a known (request id, start time) is skipped) and add the new
        ones' cost to their key, user and team totals and to the daily totals in the same transaction;
        how many were new. A replayed spool line carries the start time it was first written with, so a
        segment read twice is still counted once."""
        if not lines.strip():
            return 0
        rows = rows_of(lines)
        if not rows:
            return 0
        if self.db.dialect == "sqlite":
            async with self.db.transaction() as tx:
                return await _insert_spend_sqlite(tx, rows)
        deltas = DailyDeltas(rows)
        await self.ensure_spend_partitions(deltas.days())
        async with self.db.transaction() as tx:
            return await insert_spend(tx, rows, deltas)

    async def ensure_spend_partitions(self, days: set[int]) -> None:
        """PostgreSQL: make sure each of these days has its partition (no-op for days made before)."""
        if self.db.dialect != "postgres" or days <= self.partition_days:
            return
        self.partition_days |= await partitions.ensure(self.db, days - self.partition_days)

    async def prune_spend_logs(self, cutoff: float) -> int:
        """Retention: drop spend records that started before `cutoff`. PostgreSQL drops whole day partitions
        (a day straddling the cutoff stays until it is wholly past); SQLite deletes in short batches. The
        daily totals stay, so reports over older days still answer. The number of partitions or rows gone."""
        if self.db.dialect == "postgres":
            dropped = await partitions.drop_before(self.db, cutoff)
            self.partition_days -= {d for name in dropped if (d := partitions.day_named(name)) is not None}
            return len(dropped)
        removed = 0
        while True:
            gone = await self.db.execute(
                "DELETE FROM gw_spend_logs WHERE rowid IN (SELECT rowid FROM gw_spend_logs WHERE start_time < $1 "
                f"LIMIT {RETENTION_BATCH})", cutoff)
            removed += gone
            if gone < RETENTION_BATCH:
                return removed

    async def spend_logs(self, where: dict[str, Any], start: float | None, end: float | None, limit: int,
                         after: SpendCursor | None = None, newer: bool = False) -> list[SpendRecord]:
        """Spend records whose columns equal `where`, started in [start, end), newest first (ties by request
        id). A page at a time by keyset: those past `after` (older, or with `newer` the newer ones), never
        an offset, so a page deep in a million records costs what the first one does."""
        clauses, args = self._spend_filter(where, start, end)
        order = "start_time DESC, request_id"
        if after is not None:
            args += [after.start_time, after.request_id]
            t, rid = f"${len(args) - 1}", f"${len(args)}"
            # The range on start_time alone first, so the index on it (or on a filter column and it) bounds the scan.
            past = (f"start_time >= {t} AND (start_time > {t} OR request_id < {rid})" if newer else
                    f"start_time <= {t} AND (start_time < {t} OR request_id > {rid})")
            clauses = f"{clauses} AND {past}" if clauses else f" WHERE {past}"
            if newer:
                order = "start_time, request_id DESC"
        rows = await self.db.fetch(f"SELECT * FROM gw_spend_logs{clauses} ORDER BY {order} LIMIT {int(limit)}",
                                   *args)
        records = [spend_record(r) for r in rows]
        return records[::-1] if after is not None and newer else records

    async def spend_by_day(self, where: dict[str, Any], start: float | None, end: float | None,
                           group: str, by_model: bool = True) -> list[Row]:
        """Spend, tokens and requests per UTC day and per value of `group` (a spend_logs column) and of
        model_group (None in every row unless `by_model`), from the daily totals: whole UTC days, those that
        `start` and `end` fall in included. A list in `where` means any of its values. Filtered by a column the
        totals do not keep (a request id), from the log itself, which that filter narrows to a row or two."""
        if group not in SPEND_COLUMNS:
            raise ValueError(f"cannot group spend by {group}")
        if group not in DAILY_DIMENSIONS or not set(where) <= set(DAILY_DIMENSIONS):
            return await self._spend_by_day_from_log(where, start, end, group)
        if set(where) <= {group} and (group == "model_group" or not by_model):
            # Only the group itself narrows it: the rollup has a row per value and day.
            clauses, args = _rollup_filter(group, start, end, where.get(group))
            model = "NULLIF(value, '')" if by_model else "NULL"
            return await self.db.fetch(
                f"SELECT day, NULLIF(value, '') AS grp, {model} AS model_group, spend, total_tokens, requests "
                f"FROM gw_spend_rollup{clauses} ORDER BY day, grp", *args)
        clauses, args = _daily_filter(where, start, end)
        if not by_model:
            return await self.db.fetch(
                f"SELECT day, NULLIF({group}, '') AS grp, NULL AS model_group, SUM(spend) AS spend, "
                f"CAST(SUM(total_tokens) AS BIGINT) AS total_tokens, CAST(SUM(requests) AS BIGINT) AS requests "
                f"FROM gw_spend_daily{clauses} GROUP BY day, {group} ORDER BY day, grp", *args)
        return await self.db.fetch(
            f"SELECT day, NULLIF({group}, '') AS grp, NULLIF(model_group, '') AS model_group, SUM(spend) AS spend, "
            f"CAST(SUM(total_tokens) AS BIGINT) AS total_tokens, CAST(SUM(requests) AS BIGINT) AS requests "
            f"FROM gw_spend_daily{clauses} GROUP BY day, {group}, gw_spend_daily.model_group "
            f"ORDER BY day, grp, model_group",
            *args)

    async def spend_totals(self, where: dict[str, Any], start: float | None, end: float | None, group: str,
                           limit: int | None = None) -> list[Row]:
        """Spend, tokens and requests per value of `group` (one of DAILY_DIMENSIONS) over whole UTC days,
        largest spend first, leaving out records without a value; from the daily totals."""
        if group not in DAILY_DIMENSIONS or not set(where) <= set(DAILY_DIMENSIONS):
            raise ValueError(f"cannot total spend by {group} filtered by {sorted(where)}")
        page = f" LIMIT {int(limit)}" if limit is not None else ""
        if not where:
            clauses, args = _rollup_filter(group, start, end)
            return await self.db.fetch(
                f"SELECT value AS grp, SUM(spend) AS spend, CAST(SUM(total_tokens) AS BIGINT) AS total_tokens, "
                f"CAST(SUM(requests) AS BIGINT) AS requests FROM gw_spend_rollup{clauses} AND value <> '' "
                f"GROUP BY value ORDER BY SUM(spend) DESC, value{page}", *args)
        clauses, args = _daily_filter({**where}, start, end)
        clauses = f"{clauses} AND {group} <> ''" if clauses else f" WHERE {group} <> ''"
        return await self.db.fetch(
            f"SELECT {group} AS grp, SUM(spend) AS spend, CAST(SUM(total_tokens) AS BIGINT) AS total_tokens, "
            f"CAST(SUM(requests) AS BIGINT) AS requests FROM gw_spend_daily{clauses} GROUP BY {group} "
            f"ORDER BY SUM(spend) DESC, {group}{page}", *args)

    async def _spend_by_day_from_log(self, where: dict[str, Any], start: float | None, end: float | None,
                                     group: str) -> list[Row]:
        day = DAY_OF_START[self.db.dialect]
        clauses, args = self._spend_filter(where, start, end)
        return await self.db.fetch(
            f"SELECT {day} AS day, {group} AS grp, model_group, SUM(spend) AS spend, "
            f"SUM(total_tokens) AS total_tokens, COUNT(*) AS requests FROM gw_spend_logs{clauses} "
            f"GROUP BY {day}, {group}, model_group ORDER BY day, grp, model_group", *args)

    @staticmethod
    def _spend_filter(where: dict[str, Any], start: float | None, end: float | None) -> tuple[str, list[Any]]:
        clauses, args = [], []
        for column, value in where.items():
            if column not in SPEND_COLUMNS:
                raise ValueError(f"gw_spend_logs has no column {column}")
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
        if start is not None:
            args.append(start)
            clauses.append(f"start_time >= ${len(args)}")
        if end is not None:
            args.append(end)
            clauses.append(f"start_time < ${len(args)}")
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), args

    async def _log_change(self, tx: Any, table: Table[Any], pk: str) -> None:
        await tx.execute("INSERT INTO gw_changes (kind, ref, at) VALUES ($1, $2, $3)", table.kind, pk, time.time())

    async def latest_change(self) -> int:
        row = await self.db.fetchrow("SELECT MAX(seq) AS seq FROM gw_changes")
        return int(row["seq"]) if row and row["seq"] is not None else 0

    async def changes_since(self, seq: int, recent: float) -> tuple[int, list[tuple[str, str]]]:
        """Changes after `seq`, and every change since the time `recent`.

        Sequence numbers are handed out when a transaction writes, not when it
        commits, so a change can appear later with a lower number than one
        already seen; re-reading the last few seconds catches it.
        """
        rows = await self.db.fetch(
            "SELECT seq, kind, ref FROM gw_changes WHERE seq > $1 OR at > $2 ORDER BY seq", seq, recent)
        if not rows:
            return seq, []
        return max(seq, int(rows[-1]["seq"])), [(r["kind"], r["ref"]) for r in rows]

    async def prune_changes(self, older_than: float) -> None:
        await self.db.execute("DELETE FROM gw_changes WHERE at < $1", older_than)


def like_escaped(text: str) -> str:
    """Text matched literally inside a LIKE pattern whose escape character is a backslash."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _daily_filter(where: dict[str, Any], start: float | None, end: float | None) -> tuple[str, list[Any]]:
    """WHERE for the daily totals: the columns given, and the UTC days from `start`'s to `end`'s
    (an end on midnight is exclusive, as the log's own filter reads it)."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in where.items():
        if isinstance(value, (list, tuple)):
            marks = ", ".join(f"${len(args) + i + 1}" for i in range(len(value)))
            args.extend("" if v is None else v for v in value)
            clauses.append(f"{column} IN ({marks})" if value else "FALSE")
            continue
        args.append("" if value is None else value)
        clauses.append(f"{column} = ${len(args)}")
    if start is not None:
        args.append(partitions.iso_day(partitions.day_of(start)))
        clauses.append(f"day >= ${len(args)}")
    if end is not None:
        args.append(partitions.iso_day(-int(-end // partitions.DAY)))
        clauses.append(f"day < ${len(args)}")
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), args


def _rollup_filter(dimension: str, start: float | None, end: float | None,
                   values: str | list[str] | None = None) -> tuple[str, list[Any]]:
    """WHERE for the rollup: one dimension's rows (of these values, if given), on the UTC days `_daily_filter`
    reads."""
    clauses, args = _daily_filter({} if values is None else {"value": values}, start, end)
    return f" WHERE dimension = ${len(args) + 1}{clauses.replace(' WHERE ', ' AND ', 1)}", [*args, dimension]


# Daily totals of the records in {source} (a FROM and the start of a WHERE), added to what each day has.
DAILY_SPEND = (
    "INSERT INTO gw_spend_daily (day, api_key, user_id, team_id, end_user, model_group, model, spend, "
    "prompt_tokens, completion_tokens, total_tokens, requests) "
    "SELECT {day}, COALESCE(api_key, ''), COALESCE(user_id, ''), COALESCE(team_id, ''), COALESCE(end_user, ''), "
    "COALESCE(model_group, ''), COALESCE(model, ''), SUM(spend), SUM(prompt_tokens), SUM(completion_tokens), "
    "SUM(total_tokens), COUNT(*) FROM {source} GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7 "
    "ON CONFLICT (day, api_key, user_id, team_id, end_user, model_group, model) DO UPDATE SET "
    "spend = gw_spend_daily.spend + excluded.spend, "
    "prompt_tokens = gw_spend_daily.prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = gw_spend_daily.completion_tokens + excluded.completion_tokens, "
    "total_tokens = gw_spend_daily.total_tokens + excluded.total_tokens, "
    "requests = gw_spend_daily.requests + excluded.requests")

# The same records' totals by each dimension alone, added to the rollup: the records summed once per day and
# dimensions (each reference to `g` reads that, which both databases keep as a table since it is read six
# times), then per dimension. Ordered, as the daily totals are, so that writers on several instances take the
# rows' locks in one order and never deadlock.
ROLLUP_SPEND = (
    "WITH g AS (SELECT {day} AS day, " + ", ".join(f"COALESCE({d}, '') AS {d}" for d in ROLLUP_DIMENSIONS) +
    ", SUM(spend) AS spend, SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
    "SUM(total_tokens) AS total_tokens, COUNT(*) AS requests FROM {source} GROUP BY 1, " +
    ", ".join(str(n + 2) for n in range(len(ROLLUP_DIMENSIONS))) + ") "
    f"INSERT INTO gw_spend_rollup ({ROLLUP_COLUMNS}) SELECT dimension, value, day, SUM(spend), SUM(prompt_tokens), "
    "SUM(completion_tokens), SUM(total_tokens), SUM(requests) FROM (" + " UNION ALL ".join(
        f"SELECT '{d}' AS dimension, {d} AS value, day, spend, prompt_tokens, completion_tokens, total_tokens, "
        "requests FROM g" for d in ROLLUP_DIMENSIONS) +
    ") r GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 ON CONFLICT (dimension, value, day) DO UPDATE SET "
    "spend = gw_spend_rollup.spend + excluded.spend, "
    "prompt_tokens = gw_spend_rollup.prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = gw_spend_rollup.completion_tokens + excluded.completion_tokens, "
    "total_tokens = gw_spend_rollup.total_tokens + excluded.total_tokens, "
    "requests = gw_spend_rollup.requests + excluded.requests")

# End users are made on their first spend, as LiteLLM does: a `user` never created still has its total.
END_USER_SPEND = (
    "INSERT INTO gw_end_users (user_id, spend, blocked, extra, created_at, updated_at) "
    "SELECT end_user, SUM(spend), FALSE, '{{}}', CAST($1 AS DOUBLE PRECISION), CAST($1 AS DOUBLE PRECISION) "
    "FROM {source} end_user IS NOT NULL GROUP BY end_user "
    "ON CONFLICT (user_id) DO UPDATE SET spend = gw_end_users.spend + excluded.spend")
# A spend record counts for the organization of its team, else of its key (LiteLLM's order).
ORG_OF = "COALESCE(t.organization_id, k.organization_id)"


async def _insert_spend_sqlite(tx: Any, rows: list[list[Any]]) -> int:
    """SQLite: one executemany straight into the log, skipping known request ids. Inside this
    exclusive transaction every row it adds gets a rowid above the largest one before, so the
    totals are summed over that range by SQLite itself, with no Python per row.

    (Handing SQLite the segment as one JSON array to take apart with json_each held the GIL less
    but cost 33 us a record against 12 here, as SQLite 3.40 re-parses a row for each column.)"""
    if not rows:
        return 0
    names = ", ".join(SPEND_COLUMNS)
    marks = ", ".join(f"${i + 1}" for i in range(len(SPEND_COLUMNS)))
    row = await tx.fetchrow("SELECT COALESCE(MAX(rowid), 0) AS top FROM gw_spend_logs")
    top = int(row["top"]) if row else 0
    await tx.executemany(f"INSERT OR IGNORE INTO gw_spend_logs ({names}) VALUES ({marks})", rows)
    for table, column, ref in (("gw_keys", "token", "api_key"), ("gw_users", "user_id", "user_id"),
                               ("gw_teams", "team_id", "team_id")):
        await tx.execute(
            f"UPDATE {table} SET spend = spend + (SELECT SUM(l.spend) FROM gw_spend_logs l "
            f"WHERE l.rowid > $1 AND l.{ref} = {table}.{column}) "
            f"WHERE {column} IN (SELECT {ref} FROM gw_spend_logs WHERE rowid > $1)", top)
    await tx.execute(
        "UPDATE gw_keys SET spend = spend + (SELECT SUM(l.spend) FROM gw_spend_logs l JOIN gw_key_successors k "
        "ON k.token = l.api_key WHERE l.rowid > $1 AND k.successor = gw_keys.token) "
        "WHERE token IN (SELECT k.successor FROM gw_spend_logs l JOIN gw_key_successors k ON k.token = l.api_key "
        "WHERE l.rowid > $1)", top)
    await tx.execute(END_USER_SPEND.format(source="gw_spend_logs WHERE rowid > $2 AND"), time.time(), top)
    await tx.execute(
        f"UPDATE gw_organizations SET spend = spend + (SELECT SUM(n.spend) FROM gw_spend_logs n "
        f"LEFT JOIN gw_teams t ON t.team_id = n.team_id LEFT JOIN gw_keys k ON k.token = n.api_key "
        f"WHERE n.rowid > $1 AND {ORG_OF} = gw_organizations.organization_id) "
        f"WHERE organization_id IN (SELECT {ORG_OF} FROM gw_spend_logs n LEFT JOIN gw_teams t "
        f"ON t.team_id = n.team_id LEFT JOIN gw_keys k ON k.token = n.api_key WHERE n.rowid > $1)", top)
    await tx.execute(DAILY_SPEND.format(day=DAY_OF_START["sqlite"], source="gw_spend_logs WHERE rowid > $1"), top)
    await tx.execute(ROLLUP_SPEND.format(day=DAY_OF_START["sqlite"], source="gw_spend_logs WHERE rowid > $1"), top)
    counted = await tx.fetchrow("SELECT COUNT(*) AS n FROM gw_spend_logs WHERE rowid > $1", top)
    return int(counted["n"]) if counted else 0
