"""Versioned schema changes, applied at start under a lock so that instances starting together agree."""

from __future__ import annotations

import logging
import time

from gateway.store.database import Database

log = logging.getLogger("gateway.store")

# A statement, or statements per dialect ({"postgres": [...], "sqlite": [...]}) where the two differ.
Statement = str | dict[str, list[str]]

# The spend log's columns as of migration 10, for the tables that migration makes.
SPEND_LOG_COLUMNS = """request_id TEXT NOT NULL, api_key TEXT, key_alias TEXT, user_id TEXT, team_id TEXT, model TEXT,
    model_group TEXT, model_id TEXT, upstream_model TEXT, provider TEXT, api_base TEXT, call_type TEXT NOT NULL,
    stream BOOLEAN NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL, usage_estimated BOOLEAN NOT NULL, spend DOUBLE PRECISION NOT NULL,
    start_time DOUBLE PRECISION NOT NULL, end_time DOUBLE PRECISION NOT NULL, ttft_ms DOUBLE PRECISION,
    status TEXT NOT NULL, status_code BIGINT NOT NULL, error TEXT, tags TEXT NOT NULL, client_ip TEXT, end_user TEXT,
    PRIMARY KEY (request_id, start_time)"""
SPEND_LOG_NAMES = ("request_id, api_key, key_alias, user_id, team_id, model, model_group, model_id, upstream_model, "
                   "provider, api_base, call_type, stream, prompt_tokens, completion_tokens, total_tokens, "
                   "usage_estimated, spend, start_time, end_time, ttft_ms, status, status_code, error, tags, "
                   "client_ip, end_user")
SPEND_LOG_INDEXES = [
    "CREATE INDEX gw_spend_key ON gw_spend_logs (api_key, start_time)",
    "CREATE INDEX gw_spend_user ON gw_spend_logs (user_id, start_time)",
    "CREATE INDEX gw_spend_team ON gw_spend_logs (team_id, start_time)",
    "CREATE INDEX gw_spend_time ON gw_spend_logs (start_time)",
    "CREATE INDEX gw_spend_end_user ON gw_spend_logs (end_user, start_time)",
]
SPEND_LOG_FILTER_INDEXES = [
    "CREATE INDEX gw_spend_model ON gw_spend_logs (model_group, start_time)",
    "CREATE INDEX gw_spend_status ON gw_spend_logs (status, start_time)",
]
# One row per UTC day and (key, user, team, end user, model group, model asked for); '' stands for none, as a unique key
# treats NULLs as all different.
SPEND_DAILY = [
    """CREATE TABLE gw_spend_daily (
        day TEXT NOT NULL, api_key TEXT NOT NULL, user_id TEXT NOT NULL, team_id TEXT NOT NULL,
        end_user TEXT NOT NULL, model_group TEXT NOT NULL, model TEXT NOT NULL, spend DOUBLE PRECISION NOT NULL,
        prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, total_tokens BIGINT NOT NULL,
        requests BIGINT NOT NULL, PRIMARY KEY (day, api_key, user_id, team_id, end_user, model_group, model))""",
    "CREATE INDEX gw_spend_daily_key ON gw_spend_daily (api_key, day)",
    "CREATE INDEX gw_spend_daily_user ON gw_spend_daily (user_id, day)",
    "CREATE INDEX gw_spend_daily_team ON gw_spend_daily (team_id, day)",
    "CREATE INDEX gw_spend_daily_end_user ON gw_spend_daily (end_user, day)",
]
SPEND_DAILY_FILL = (
    "INSERT INTO gw_spend_daily SELECT {day} AS d, COALESCE(api_key, ''), COALESCE(user_id, ''), "
    "COALESCE(team_id, ''), COALESCE(end_user, ''), COALESCE(model_group, ''), COALESCE(model, ''), SUM(spend), "
    "SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), COUNT(*) FROM gw_spend_logs "
    "GROUP BY 1, 2, 3, 4, 5, 6, 7")
# What the daily totals are kept per; the rollup keeps each alone (store.DAILY_DIMENSIONS names the same six).
ROLLUP_DIMENSIONS = ("api_key", "user_id", "team_id", "end_user", "model_group", "model")
ROLLUP_COLUMNS = "dimension, value, day, spend, prompt_tokens, completion_tokens, total_tokens, requests"
# One row per dimension, value and UTC day: the totals of every key (or team, user, end user, model) on a day,
# whatever else its requests had in common, so a page over all of them reads a row per key and day.
SPEND_ROLLUP = {
    "postgres": [
        """CREATE TABLE gw_spend_rollup (
            dimension TEXT NOT NULL, value TEXT NOT NULL, day TEXT NOT NULL, spend DOUBLE PRECISION NOT NULL,
            prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, total_tokens BIGINT NOT NULL,
            requests BIGINT NOT NULL, PRIMARY KEY (dimension, value, day)) WITH (fillfactor = 50)""",
    ],
    # Clustered by its key: the rows of one dimension are read in order, with no lookup per row.
    "sqlite": [
        """CREATE TABLE gw_spend_rollup (
            dimension TEXT NOT NULL, value TEXT NOT NULL, day TEXT NOT NULL, spend DOUBLE PRECISION NOT NULL,
            prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, total_tokens BIGINT NOT NULL,
            requests BIGINT NOT NULL, PRIMARY KEY (dimension, value, day)) WITHOUT ROWID""",
    ],
}
SPEND_ROLLUP_FILL = (f"INSERT INTO gw_spend_rollup ({ROLLUP_COLUMNS}) " + " UNION ALL ".join(
    f"SELECT '{d}', {d}, day, SUM(spend), SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), "
    f"SUM(requests) FROM gw_spend_daily GROUP BY {d}, day" for d in ROLLUP_DIMENSIONS))
DAY_OF_START = {
    "postgres": "to_char(to_timestamp(start_time) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "sqlite": "date(start_time, 'unixepoch')",
}

# Each entry is applied once, in order; never edit one that has shipped, add the next.
MIGRATIONS: list[tuple[int, str, list[Statement]]] = [
    (1, "keys, users, teams and the change log", [
        """CREATE TABLE gw_keys (
            token TEXT PRIMARY KEY, key_name TEXT NOT NULL, key_alias TEXT, user_id TEXT, team_id TEXT,
            models TEXT NOT NULL, aliases TEXT NOT NULL, max_budget DOUBLE PRECISION,
            soft_budget DOUBLE PRECISION, budget_duration TEXT, budget_reset_at DOUBLE PRECISION,
            expires DOUBLE PRECISION, metadata TEXT NOT NULL, tags TEXT NOT NULL, tpm_limit BIGINT,
            rpm_limit BIGINT, max_parallel_requests BIGINT, model_max_budget TEXT NOT NULL,
            model_rpm_limit TEXT NOT NULL, model_tpm_limit TEXT NOT NULL, blocked BOOLEAN NOT NULL,
            spend DOUBLE PRECISION NOT NULL, created_by TEXT, created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        "CREATE UNIQUE INDEX gw_keys_alias ON gw_keys (key_alias)",
        "CREATE INDEX gw_keys_user ON gw_keys (user_id)",
        "CREATE INDEX gw_keys_team ON gw_keys (team_id)",
        """CREATE TABLE gw_users (
            user_id TEXT PRIMARY KEY, user_alias TEXT, user_email TEXT, user_role TEXT NOT NULL,
            teams TEXT NOT NULL, models TEXT NOT NULL, max_budget DOUBLE PRECISION, budget_duration TEXT,
            budget_reset_at DOUBLE PRECISION, tpm_limit BIGINT, rpm_limit BIGINT, max_parallel_requests BIGINT,
            metadata TEXT NOT NULL, spend DOUBLE PRECISION NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE gw_teams (
            team_id TEXT PRIMARY KEY, team_alias TEXT, models TEXT NOT NULL, members_with_roles TEXT NOT NULL,
            max_budget DOUBLE PRECISION, budget_duration TEXT, budget_reset_at DOUBLE PRECISION,
            tpm_limit BIGINT, rpm_limit BIGINT, max_parallel_requests BIGINT, metadata TEXT NOT NULL,
            blocked BOOLEAN NOT NULL, spend DOUBLE PRECISION NOT NULL, from_config BOOLEAN NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
        "{changes_table}",
    ]),
    (2, "look-ups by email, and the change log by time", [
        "CREATE INDEX gw_users_email ON gw_users (user_email)",
        "CREATE INDEX gw_changes_at ON gw_changes (at)",
    ]),
    (3, "spend logs", [
        """CREATE TABLE gw_spend_logs (
            request_id TEXT PRIMARY KEY, api_key TEXT, key_alias TEXT, user_id TEXT, team_id TEXT, model TEXT,
            model_group TEXT, model_id TEXT, upstream_model TEXT, provider TEXT, api_base TEXT,
            call_type TEXT NOT NULL, stream BOOLEAN NOT NULL, prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL, total_tokens BIGINT NOT NULL, usage_estimated BOOLEAN NOT NULL,
            spend DOUBLE PRECISION NOT NULL, start_time DOUBLE PRECISION NOT NULL,
            end_time DOUBLE PRECISION NOT NULL, ttft_ms DOUBLE PRECISION, status TEXT NOT NULL,
            status_code BIGINT NOT NULL, error TEXT, tags TEXT NOT NULL, client_ip TEXT)""",
        "CREATE INDEX gw_spend_key ON gw_spend_logs (api_key, start_time)",
        "CREATE INDEX gw_spend_user ON gw_spend_logs (user_id, start_time)",
        "CREATE INDEX gw_spend_team ON gw_spend_logs (team_id, start_time)",
        "CREATE INDEX gw_spend_time ON gw_spend_logs (start_time)",
    ]),
    (4, "regenerated keys' successors, so that spend still being written follows the key", [
        "CREATE TABLE gw_key_successors (token TEXT PRIMARY KEY, successor TEXT NOT NULL)",
        "CREATE INDEX gw_key_successors_successor ON gw_key_successors (successor)",
    ]),
    (5, "LiteLLM's fields kept as given on keys, users and teams", [
        "ALTER TABLE gw_keys ADD COLUMN extra TEXT NOT NULL DEFAULT '{{}}'",
        "ALTER TABLE gw_users ADD COLUMN extra TEXT NOT NULL DEFAULT '{{}}'",
        "ALTER TABLE gw_teams ADD COLUMN extra TEXT NOT NULL DEFAULT '{{}}'",
    ]),
    (6, "models and credentials added through the API (/model/new, /credentials)", [
        """CREATE TABLE gw_models (
            model_id TEXT PRIMARY KEY, model_name TEXT NOT NULL, litellm_params TEXT NOT NULL,
            model_info TEXT NOT NULL, created_by TEXT, updated_by TEXT, created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE gw_credentials (
            credential_name TEXT PRIMARY KEY, display_name TEXT, credential_values TEXT NOT NULL,
            credential_info TEXT NOT NULL, created_by TEXT, updated_by TEXT, created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
    ]),
    (7, "end users (customers), budgets, and the end user of each spend record", [
        """CREATE TABLE gw_budgets (
            budget_id TEXT PRIMARY KEY, max_budget DOUBLE PRECISION, soft_budget DOUBLE PRECISION,
            max_parallel_requests BIGINT, tpm_limit BIGINT, rpm_limit BIGINT, model_max_budget TEXT NOT NULL,
            budget_duration TEXT, budget_reset_at DOUBLE PRECISION, created_by TEXT, updated_by TEXT,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE gw_end_users (
            user_id TEXT PRIMARY KEY, alias TEXT, spend DOUBLE PRECISION NOT NULL DEFAULT 0,
            allowed_model_region TEXT, default_model TEXT, budget_id TEXT, blocked BOOLEAN NOT NULL DEFAULT FALSE,
            extra TEXT NOT NULL DEFAULT '{{}}', created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX gw_end_users_budget ON gw_end_users (budget_id)",
        "ALTER TABLE gw_spend_logs ADD COLUMN end_user TEXT",
        "CREATE INDEX gw_spend_end_user ON gw_spend_logs (end_user, start_time)",
    ]),
    (8, "organizations, access groups, and the organization of teams and keys", [
        """CREATE TABLE gw_organizations (
            organization_id TEXT PRIMARY KEY, organization_alias TEXT, models TEXT NOT NULL, budget_id TEXT,
            members TEXT NOT NULL, max_budget DOUBLE PRECISION, budget_duration TEXT,
            budget_reset_at DOUBLE PRECISION, tpm_limit BIGINT, rpm_limit BIGINT, max_parallel_requests BIGINT,
            metadata TEXT NOT NULL, spend DOUBLE PRECISION NOT NULL, extra TEXT NOT NULL, blocked BOOLEAN NOT NULL,
            created_by TEXT, updated_by TEXT, created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE gw_access_groups (
            access_group_id TEXT PRIMARY KEY, access_group_name TEXT NOT NULL, description TEXT,
            access_model_names TEXT NOT NULL, access_mcp_server_ids TEXT NOT NULL, access_agent_ids TEXT NOT NULL,
            assigned_team_ids TEXT NOT NULL, assigned_key_ids TEXT NOT NULL, created_by TEXT, updated_by TEXT,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
        "CREATE UNIQUE INDEX gw_access_groups_name ON gw_access_groups (access_group_name)",
        "ALTER TABLE gw_teams ADD COLUMN organization_id TEXT",
        "ALTER TABLE gw_keys ADD COLUMN organization_id TEXT",
        "CREATE INDEX gw_teams_org ON gw_teams (organization_id)",
        "CREATE INDEX gw_keys_org ON gw_keys (organization_id)",
    ]),
    (9, "keys' budget windows and scheduled rotation", [
        "ALTER TABLE gw_keys ADD COLUMN budget_limits TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE gw_keys ADD COLUMN budget_limits_reset_at DOUBLE PRECISION",
        "ALTER TABLE gw_keys ADD COLUMN auto_rotate BOOLEAN NOT NULL DEFAULT FALSE",
        "ALTER TABLE gw_keys ADD COLUMN rotation_interval TEXT",
        "ALTER TABLE gw_keys ADD COLUMN key_rotation_at DOUBLE PRECISION",
        "ALTER TABLE gw_keys ADD COLUMN last_rotation_at DOUBLE PRECISION",
        "ALTER TABLE gw_keys ADD COLUMN rotation_count BIGINT NOT NULL DEFAULT 0",
        "CREATE INDEX gw_keys_windows_reset ON gw_keys (budget_limits_reset_at)",
        "CREATE INDEX gw_keys_rotation ON gw_keys (key_rotation_at)",
    ]),
    (10, "spend logs keyed by (request id, start time), by day on PostgreSQL, with daily totals", [
        {"postgres": [
            "ALTER TABLE gw_spend_logs RENAME TO gw_spend_logs_v9",
            f"CREATE TABLE gw_spend_logs ({SPEND_LOG_COLUMNS}) PARTITION BY RANGE (start_time)",
            "CREATE TABLE gw_spend_logs_default PARTITION OF gw_spend_logs DEFAULT",
            # A partition for every day the old table has rows of (named as gateway/spend/partitions.py names them).
            """DO $$ DECLARE d BIGINT; BEGIN
                FOR d IN SELECT DISTINCT floor(start_time / 86400)::BIGINT FROM gw_spend_logs_v9 LOOP
                    EXECUTE format('CREATE TABLE %I PARTITION OF gw_spend_logs FOR VALUES FROM (%s) TO (%s)',
                        'gw_spend_logs_p' || to_char(to_timestamp(d * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD'),
                        d * 86400, (d + 1) * 86400);
                END LOOP; END $$""",
            f"INSERT INTO gw_spend_logs ({SPEND_LOG_NAMES}) SELECT {SPEND_LOG_NAMES} FROM gw_spend_logs_v9",
            "DROP TABLE gw_spend_logs_v9",
            *SPEND_LOG_INDEXES,
            *SPEND_DAILY,
            # Room in each page, so that adding to a day's row is a HOT update that touches no index.
            "ALTER TABLE gw_spend_daily SET (fillfactor = 50)",
            SPEND_DAILY_FILL.format(day=DAY_OF_START["postgres"]),
        ], "sqlite": [
            f"CREATE TABLE gw_spend_logs_v10 ({SPEND_LOG_COLUMNS})",
            f"INSERT INTO gw_spend_logs_v10 ({SPEND_LOG_NAMES}) SELECT {SPEND_LOG_NAMES} FROM gw_spend_logs",
            "DROP TABLE gw_spend_logs",
            "ALTER TABLE gw_spend_logs_v10 RENAME TO gw_spend_logs",
            *SPEND_LOG_INDEXES,
            *SPEND_DAILY,
            SPEND_DAILY_FILL.format(day=DAY_OF_START["sqlite"]),
        ]},
    ]),
    # A constant default: PostgreSQL 11+ adds these without rewriting a partition; SQLite without a copy.
    (11, "spend logs keep the cached, cache-written and reasoning parts of the tokens", [
        "ALTER TABLE gw_spend_logs ADD COLUMN cache_read_tokens BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE gw_spend_logs ADD COLUMN cache_creation_tokens BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE gw_spend_logs ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0",
    ]),
    (12, "the admin UI's sessions, and keys listed newest first a page at a time", [
        """CREATE TABLE gw_ui_sessions (
            session_hash TEXT PRIMARY KEY, role TEXT NOT NULL, subject TEXT NOT NULL, csrf TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX gw_ui_sessions_expiry ON gw_ui_sessions (expires_at)",
        # Newest first, and narrow enough that a search over alias, user and team scans it, not the table.
        "CREATE INDEX gw_keys_listing ON gw_keys (created_at DESC, token, key_alias, user_id, team_id)",
    ]),
    # Every spend batch adds to its keys', users', teams', end users' and organizations' spend. On a full page
    # each of those updates is a new row version on another page and an entry in every index of the table
    # (seven on gw_keys). Room on the page makes them HOT updates, which touch no index: with 1,000 keys in
    # a 2,000-record batch, the totals then cost PostgreSQL 23-35 us a record instead of 42-69. Pages filled
    # before this get the room as their rows move.
    (13, "room in each page of the tables whose spend the writer adds to (PostgreSQL)", [
        {"postgres": [f"ALTER TABLE {table} SET (fillfactor = 50)"
                      for table in ("gw_keys", "gw_users", "gw_teams", "gw_end_users", "gw_organizations")],
         "sqlite": []},
    ]),
    # With a million requests a month over thousands of keys the daily totals hold nearly a row per request
    # (few requests share a day, key, team, end user and model); a page over every key or model read them
    # all, in seconds. The rollup holds a row per key (or team, model...) and day.
    # The request log is read newest first a page at a time; filtered by a model or a status no index led
    # with, a model with no requests (or failures that are rare) read every record to find a page: 1 to 6 s
    # over a million.
    (14, "spend totals per day by each dimension alone, and the log by model and by status", [
        {"postgres": [*SPEND_ROLLUP["postgres"], SPEND_ROLLUP_FILL],
         "sqlite": [*SPEND_ROLLUP["sqlite"], SPEND_ROLLUP_FILL]},
        *SPEND_LOG_FILTER_INDEXES,
    ]),
    # gateway/responses_store.py: the deployment that holds each stored Responses API answer.
    (15, "which deployment holds each stored response of the Responses API", [
        """CREATE TABLE gw_response_routes (
            response_id TEXT PRIMARY KEY, deployment_id TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX gw_response_routes_age ON gw_response_routes (created_at)",
    ]),
]

CHANGES_TABLE = {
    "sqlite": "CREATE TABLE gw_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
              "ref TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
    "postgres": "CREATE TABLE gw_changes (seq BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, "
                "ref TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
}
LOCK_ID = 7_340_112_001  # pg_advisory_xact_lock key for migrations


def _for_dialect(statements: list[Statement], dialect: str) -> list[str]:
    found: list[str] = []
    for statement in statements:
        if isinstance(statement, dict):
            found.extend(statement[dialect])
        else:
            found.append(statement.format(changes_table=CHANGES_TABLE[dialect]))
    return found


async def migrate(db: Database) -> int:
    """Bring the schema to the newest version; the version it is at afterwards."""
    started = time.perf_counter()
    async with db.transaction() as tx:
        if db.dialect == "postgres":
            await tx.execute("SELECT pg_advisory_xact_lock($1)", LOCK_ID)
        await tx.execute("CREATE TABLE IF NOT EXISTS gw_schema (version INTEGER NOT NULL, "
                         "description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
        row = await tx.fetchrow("SELECT MAX(version) AS version FROM gw_schema")
        current = int(row["version"]) if row and row["version"] is not None else 0
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in _for_dialect(statements, db.dialect):
                await tx.execute(statement)
            await tx.execute("INSERT INTO gw_schema (version, description, applied_at) VALUES ($1, $2, $3)",
                             version, description, time.time())
            log.info("schema: applied migration %d (%s)", version, description)
            current = version
    log.debug("schema at version %d after %.0f ms", current, (time.perf_counter() - started) * 1000)
    return current
