"""PostgreSQL's spend writer: a batch of records into the log, and what they add to the daily totals, the
rollup and their key, user, team, end user and organization, in one transaction.

The records are COPYed straight into the partitioned log. A record seen before (a spool segment read again
after a crash, or by two instances at once) breaks the COPY on the log's unique key; the batch then goes the
slow way, through a scratch table and INSERT ... ON CONFLICT DO NOTHING, and only the rows that went in are
counted. Either way the database's unique key decides what is new, so every record is counted once.
"""

from __future__ import annotations

import operator
import time
from typing import Any

from gateway.spend.daily import DailyDeltas
from gateway.spend.record import COLUMNS, ENCODER

NAMES = ", ".join(COLUMNS)
# Writers insert in one order, the log's key as Python orders it (start time, then request id by code points,
# which is COLLATE "C"), so that two writing the same records wait for one another instead of deadlocking.
# A spool segment is in start-time order already, so the sort costs little, and the rows go to the log's
# indexes by time, as a segment at a time would.
_START, _REQUEST_ID = COLUMNS.index("start_time"), COLUMNS.index("request_id")
IN_KEY_ORDER = operator.itemgetter(_START, _REQUEST_ID)
KEEP_NEW = (f"INSERT INTO gw_spend_logs ({NAMES}) SELECT DISTINCT ON (start_time, request_id COLLATE \"C\") "
            f"{NAMES} FROM gw_spend_in ORDER BY start_time, request_id COLLATE \"C\" "
            f"ON CONFLICT (request_id, start_time) DO NOTHING RETURNING {NAMES}")

# What the batch adds ($1: DailyDeltas.rows() as one JSON array) to the daily totals and to the rollup (each
# dimension alone), merged and in key order (so that writers adding to the same rows lock them in the same
# order), and, summed again, to the spend kept on keys (and the keys that succeeded them), users, teams,
# end users (made on their first spend, as LiteLLM does; $2 is now) and organizations (of the team, else of
# the key: LiteLLM's order).
# One statement, so a batch costs one round trip; each table is written by one part of it only, as a row
# may not change twice in one statement. JSON, because twelve array parameters cost asyncpg about 10 us of
# the gateway's CPU a row (an isinstance check per element), and this costs msgspec under 1 us, which
# PostgreSQL reads in about 2 us.
# (msgspec writes a spend that is not a number as null: it stays not a number, as it was in the log.)
TOTALS = """
WITH d AS (
    SELECT e->>0 AS day, e->>1 AS api_key, e->>2 AS user_id, e->>3 AS team_id, e->>4 AS end_user,
        e->>5 AS model_group, e->>6 AS model, COALESCE((e->>7)::float8, 'NaN') AS spend,
        (e->>8)::bigint AS prompt_tokens, (e->>9)::bigint AS completion_tokens, (e->>10)::bigint AS total_tokens,
        (e->>11)::bigint AS requests
    FROM json_array_elements($1::json) e
), daily AS (
    INSERT INTO gw_spend_daily (day, api_key, user_id, team_id, end_user, model_group, model, spend, prompt_tokens,
        completion_tokens, total_tokens, requests)
    SELECT day, COALESCE(api_key, ''), COALESCE(user_id, ''), COALESCE(team_id, ''), COALESCE(end_user, ''),
        COALESCE(model_group, ''), COALESCE(model, ''), SUM(spend), SUM(prompt_tokens), SUM(completion_tokens),
        SUM(total_tokens), SUM(requests)
    FROM d GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT (day, api_key, user_id, team_id, end_user, model_group, model) DO UPDATE SET
        spend = gw_spend_daily.spend + excluded.spend,
        prompt_tokens = gw_spend_daily.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = gw_spend_daily.completion_tokens + excluded.completion_tokens,
        total_tokens = gw_spend_daily.total_tokens + excluded.total_tokens,
        requests = gw_spend_daily.requests + excluded.requests
), rollup AS (
    INSERT INTO gw_spend_rollup (dimension, value, day, spend, prompt_tokens, completion_tokens, total_tokens,
        requests)
    SELECT v.dimension, COALESCE(v.value, ''), d.day, SUM(d.spend), SUM(d.prompt_tokens), SUM(d.completion_tokens),
        SUM(d.total_tokens), SUM(d.requests)
    FROM d CROSS JOIN LATERAL (VALUES ('api_key', d.api_key), ('user_id', d.user_id), ('team_id', d.team_id),
        ('end_user', d.end_user), ('model_group', d.model_group), ('model', d.model)) v (dimension, value)
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (dimension, value, day) DO UPDATE SET
        spend = gw_spend_rollup.spend + excluded.spend,
        prompt_tokens = gw_spend_rollup.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = gw_spend_rollup.completion_tokens + excluded.completion_tokens,
        total_tokens = gw_spend_rollup.total_tokens + excluded.total_tokens,
        requests = gw_spend_rollup.requests + excluded.requests
), keys AS (
    UPDATE gw_keys SET spend = gw_keys.spend + s.total FROM (
        SELECT token, SUM(spend) AS total FROM (
            SELECT api_key AS token, spend FROM d
            UNION ALL SELECT k.successor, d.spend FROM d JOIN gw_key_successors k ON k.token = d.api_key) o
        GROUP BY token) s
    WHERE gw_keys.token = s.token
), users AS (
    UPDATE gw_users SET spend = gw_users.spend + s.total
    FROM (SELECT user_id, SUM(spend) AS total FROM d GROUP BY user_id) s WHERE gw_users.user_id = s.user_id
), teams AS (
    UPDATE gw_teams SET spend = gw_teams.spend + s.total
    FROM (SELECT team_id, SUM(spend) AS total FROM d GROUP BY team_id) s WHERE gw_teams.team_id = s.team_id
), end_users AS (
    INSERT INTO gw_end_users (user_id, spend, blocked, extra, created_at, updated_at)
    SELECT end_user, SUM(spend), FALSE, '{}', $2::float8, $2::float8 FROM d WHERE end_user IS NOT NULL
    GROUP BY end_user
    ON CONFLICT (user_id) DO UPDATE SET spend = gw_end_users.spend + excluded.spend
), orgs AS (
    UPDATE gw_organizations SET spend = gw_organizations.spend + s.total FROM (
        SELECT COALESCE(t.organization_id, k.organization_id) AS org, SUM(d.spend) AS total FROM d
        LEFT JOIN gw_teams t ON t.team_id = d.team_id LEFT JOIN gw_keys k ON k.token = d.api_key GROUP BY 1) s
    WHERE gw_organizations.organization_id = s.org
)
SELECT 1
"""


async def insert_spend(tx: Any, rows: list[list[Any]], deltas: DailyDeltas) -> int:
    """Write the batch (`deltas` summed over all of `rows`) inside `tx`; how many records were new."""
    rows = sorted(rows, key=IN_KEY_ORDER)
    if await _seen(tx, rows[0]) or not await _copied(tx, rows):
        rows = await _insert_new(tx, rows)
        deltas = DailyDeltas(rows)
    if rows:
        await tx.execute(TOTALS, ENCODER.encode(deltas.rows()).decode(), time.time())
    return len(rows)


async def _seen(tx: Any, row: list[Any]) -> bool:
    """Whether the log has this record: a segment read again has all of its records, and then goes the slow
    way at once, rather than after a COPY that fails (with an error in PostgreSQL's own log)."""
    return await tx.fetchrow("SELECT 1 AS found FROM gw_spend_logs WHERE request_id = $1 AND start_time = $2",
                             row[_REQUEST_ID], row[_START]) is not None


async def _copied(tx: Any, rows: list[list[Any]]) -> bool:
    """COPY the rows straight into the log; False, and nothing written, if the log has one of them."""
    try:
        async with tx.savepoint():
            await tx.copy_records("gw_spend_logs", COLUMNS, rows)
    except Exception as exc:
        if type(exc).__name__ != "UniqueViolationError":
            raise
        return False
    return True


async def _insert_new(tx: Any, rows: list[list[Any]]) -> list[list[Any]]:
    """The slow way: the batch's rows that the log did not have (each once), as they went in."""
    await tx.execute("CREATE TEMP TABLE IF NOT EXISTS gw_spend_in (LIKE gw_spend_logs) ON COMMIT DELETE ROWS")
    await tx.copy_records("gw_spend_in", COLUMNS, rows)
    added = await tx.fetch(KEEP_NEW)
    return [[row[c] for c in COLUMNS] for row in added]
