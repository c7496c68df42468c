"""A million spend records written into a store in bulk, made by the database itself from the row number
(no Python per record), as a restore or an import would load them: the log's secondary indexes dropped
and built again after, then the daily totals and the rollup filled by the statements migrations 10 and 13
fill them with.

Every field is a function of the row number i, by integer hashing that SQLite, PostgreSQL and `Seeded`
below compute alike, so a test knows which record a page must show without reading the store.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from gateway.accounts import hash_key
from gateway.spend import partitions
from gateway.store.migrations import (
    DAY_OF_START,
    SPEND_DAILY,
    SPEND_DAILY_FILL,
    SPEND_LOG_FILTER_INDEXES,
    SPEND_LOG_INDEXES,
    SPEND_ROLLUP_FILL,
)
from gateway.store.store import Store

DAY = 86400
MODELS = ("gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini", "claude-sonnet", "llama-70b")
# Three multiplicative hashes of the row number, each below 2**32: products stay within 64 bits.
MULTIPLIERS = ((0, 2654435761), (7, 2246822519), (13, 3266489917))
MODULUS = 2**32


class Shape(NamedTuple):
    count: int
    days: int
    now: float
    active_keys: int  # keys 0..active_keys-1 made the requests, the first ones far more than the rest
    users: int
    teams: int
    end_users: int


class Seeded(NamedTuple):
    """What the i-th record holds, computed as the database computes it."""

    request_id: str
    key: int
    team: str
    model: str
    status: str
    end_user: str | None

    @property
    def key_alias(self) -> str:
        return f"seed-{self.key:06d}"


def hashes(i: int) -> tuple[int, int, int]:
    h1, h2, h3 = (((i + add) * mul) % MODULUS for add, mul in MULTIPLIERS)
    return h1, h2, h3


def record(shape: Shape, i: int) -> Seeded:
    h1, h2, h3 = hashes(i)
    key = (h1 % shape.active_keys) * (h2 % shape.active_keys) // shape.active_keys
    outcome = h1 % 100
    status = "failure" if outcome < 2 else "cancelled" if outcome == 2 else "success"
    end_user = f"cust-{(key * 7 + h3 % 3) % shape.end_users:04d}" if key % 4 == 0 else None
    return Seeded(f"{i:032d}", key, f"team-{key % shape.teams:02d}", MODELS[h3 % len(MODELS)], status, end_user)


def _insert(shape: Shape, dialect: str) -> str:
    def pad(expression: str, width: int) -> str:
        return (f"printf('%0{width}d', {expression})" if dialect == "sqlite"
                else f"lpad(({expression})::text, {width}, '0')")

    h1, h2, h3 = (f"(((i + {add}) * {mul}) % {MODULUS})" for add, mul in MULTIPLIERS)
    models = " ".join(f"WHEN {n} THEN '{m}'" for n, m in enumerate(MODELS))
    start = f"{shape.now!r} - {shape.days * DAY} * ({shape.count} - i) / {float(shape.count)!r}"
    numbers = (f"WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {shape.count - 1}) "
               if dialect == "sqlite" else "")
    source = "seq" if dialect == "sqlite" else f"generate_series(0::bigint, {shape.count - 1}) AS i"
    a = shape.active_keys
    rows = (f"SELECT i, {h1} AS h1, {h2} AS h2, {h3} AS h3, ({h1} % {a}) * ({h2} % {a}) / {a} AS n, "
            f"CASE {h3} % {len(MODELS)} {models} END AS m, {start} AS t FROM {source}")
    prompt, completion = "(20 + g.h2 % 3980)", "(g.h3 % 1200)"
    failed, cancelled = "g.h1 % 100 < 2", "g.h1 % 100 = 2"
    return (
        f"{numbers}INSERT INTO gw_spend_logs (request_id, api_key, key_alias, user_id, team_id, model, model_group, "
        "model_id, upstream_model, provider, call_type, stream, prompt_tokens, completion_tokens, total_tokens, "
        "cache_read_tokens, usage_estimated, spend, start_time, end_time, ttft_ms, status, status_code, error, tags, "
        f"end_user) SELECT {pad('g.i', 32)}, k.token, 'seed-' || {pad('g.n', 6)}, "
        f"'user-' || {pad(f'g.n % {shape.users}', 4)}, 'team-' || {pad(f'g.n % {shape.teams}', 2)}, g.m, g.m, "
        f"g.m || '-1', g.m, 'openai', 'chat/completions', FALSE, {prompt}, {completion}, {prompt} + {completion}, "
        f"CASE WHEN g.n % 3 = 0 THEN {prompt} / 4 ELSE 0 END, FALSE, ({prompt} + 3 * {completion}) * 0.000001, g.t, "
        f"g.t + 0.2 + (g.h1 % 4000) / 1000.0, 80 + g.h2 % 400, "
        f"CASE WHEN {failed} THEN 'failure' WHEN {cancelled} THEN 'cancelled' ELSE 'success' END, "
        f"CASE WHEN {failed} THEN 500 WHEN {cancelled} THEN 499 ELSE 200 END, "
        f"CASE WHEN {failed} THEN 'upstream answered 500: overloaded' END, '[]', "
        f"CASE WHEN g.n % 4 = 0 THEN 'cust-' || {pad(f'(g.n * 7 + g.h3 % 3) % {shape.end_users}', 4)} END "
        f"FROM ({rows}) g JOIN gw_seed_keys k ON k.n = g.n")


async def load(store: Store, shape: Shape) -> None:
    db = store.db
    if db.dialect == "postgres":
        first = partitions.day_of(shape.now - shape.days * DAY)
        await store.ensure_spend_partitions(set(range(first, partitions.day_of(shape.now) + 1)))
    # The secondary indexes of the log and of the daily totals, built once the rows are in.
    built_after = [*SPEND_LOG_INDEXES, *SPEND_LOG_FILTER_INDEXES, *SPEND_DAILY]
    indexes = [(found.group(1), statement) for statement in built_after
               if (found := re.match(r"CREATE INDEX (\w+)", statement))]
    if db.dialect == "sqlite":
        await db.execute("PRAGMA temp_store = MEMORY")  # the sorts of the GROUP BYs, in memory
    async with db.transaction() as tx:
        if db.dialect == "postgres":
            await tx.execute("SET LOCAL maintenance_work_mem = '256MB'")
            await tx.execute("SET LOCAL work_mem = '256MB'")
        else:
            await tx.execute("PRAGMA cache_size = -262144")
        await tx.execute("CREATE TABLE gw_seed_keys (n BIGINT PRIMARY KEY, token TEXT NOT NULL)")
        await tx.executemany("INSERT INTO gw_seed_keys (n, token) VALUES ($1, $2)",
                             [(n, hash_key(f"sk-seed-{n:06d}")) for n in range(shape.active_keys)])
        for name, _ in indexes:
            await tx.execute(f"DROP INDEX {name}")
        await tx.execute(_insert(shape, db.dialect))
        await tx.execute(SPEND_DAILY_FILL.format(day=DAY_OF_START[db.dialect]))
        for _, statement in indexes:
            await tx.execute(statement)
        await tx.execute(SPEND_ROLLUP_FILL)
        await tx.execute("DROP TABLE gw_seed_keys")
        if db.dialect == "sqlite":
            await tx.execute("PRAGMA cache_size = -2000")
    if db.dialect == "sqlite":
        await db.execute("PRAGMA temp_store = DEFAULT")
    if db.dialect == "postgres":
        # What autovacuum does within a minute of a load this size (from a smaller sample: the default reads
        # 30,000 rows of each of the 31 partitions).
        async with db.transaction() as tx:
            await tx.execute("SET LOCAL default_statistics_target = 10")
            await tx.execute("ANALYZE gw_spend_logs, gw_spend_daily, gw_spend_rollup")
