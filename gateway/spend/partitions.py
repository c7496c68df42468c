"""PostgreSQL's spend log is partitioned by UTC day of start_time: one table per day, dropped whole by retention.

A partition is made by creating a plain table, moving into it whatever rows of its day sit in the default
partition, and attaching it. Attaching takes a weaker lock on the parent than CREATE TABLE ... PARTITION OF
(reads and inserts go on meanwhile), and moving first means a day that once landed in the default
partition (a writer that did not know its partition was dropped) can still get its own table.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

DAY = 86400
PREFIX = "gw_spend_logs_p"
DEFAULT = "gw_spend_logs_default"
NAME = re.compile(rf"^{PREFIX}(\d{{8}})$")
LOCK_ID = 7_340_112_010  # pg_advisory_xact_lock key for partition changes


def day_of(moment: float) -> int:
    """Days since the epoch (UTC) of an epoch-seconds moment."""
    return int(moment // DAY)


def name_of(day: int) -> str:
    return PREFIX + datetime.fromtimestamp(day * DAY, UTC).strftime("%Y%m%d")


def day_named(name: str) -> int | None:
    match = NAME.match(name)
    if match is None:
        return None
    return day_of(datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).timestamp())


def iso_day(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")


async def existing(tx: Any) -> dict[int, str]:
    """The day partitions there are, by day."""
    rows = await tx.fetch("SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                          "WHERE i.inhparent = 'gw_spend_logs'::regclass")
    found = {}
    for row in rows:
        day = day_named(row["name"])
        if day is not None:
            found[day] = row["name"]
    return found


async def ensure(db: Any, days: set[int]) -> set[int]:
    """Make the partitions of these days that are missing; the days that have one now."""
    async with db.transaction() as tx:
        await tx.execute("SELECT pg_advisory_xact_lock($1)", LOCK_ID)
        have = await existing(tx)
        for day in sorted(days - set(have)):
            name, low, high = name_of(day), day * DAY, (day + 1) * DAY
            await tx.execute(f"CREATE TABLE {name} (LIKE gw_spend_logs INCLUDING DEFAULTS)")
            await tx.execute(f"WITH moved AS (DELETE FROM {DEFAULT} WHERE start_time >= $1 AND start_time < $2 "
                             f"RETURNING *) INSERT INTO {name} SELECT * FROM moved", float(low), float(high))
            await tx.execute(f"ALTER TABLE gw_spend_logs ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})")
    return days


async def drop_before(db: Any, cutoff: float) -> list[str]:
    """Drop every day partition wholly before `cutoff`, and the default partition's rows before it;
    the partitions dropped. A day that straddles the cutoff is kept whole until it is past."""
    async with db.transaction() as tx:
        await tx.execute("SELECT pg_advisory_xact_lock($1)", LOCK_ID)
        # Dropping needs the parent to itself for a moment: wait that long at most, and try again next run.
        await tx.execute("SET LOCAL lock_timeout = '10s'")
        have = await existing(tx)
        dropped = [name for day, name in sorted(have.items()) if (day + 1) * DAY <= cutoff]
        for name in dropped:
            await tx.execute(f"DROP TABLE {name}")
        await tx.execute(f"DELETE FROM {DEFAULT} WHERE start_time < $1", cutoff)
    return dropped
