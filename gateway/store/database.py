"""Two SQL backends behind one small interface.

SQL is written once, with PostgreSQL's `$1` placeholders; the SQLite backend
rewrites them to SQLite's numbered `?1`. Rows come back as dicts either way.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

Row = dict[str, Any]
PLACEHOLDER = re.compile(r"\$(\d+)")


class Database(Protocol):
    dialect: str

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it touched."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    def transaction(self) -> Any:
        """`async with db.transaction() as tx:` where tx has execute/fetch/fetchrow."""

    async def close(self) -> None: ...


BUSY_WAIT = 10.0
# Rows per executemany call on the event loop: about two milliseconds of SQLite work.
INLINE_SLICE = 256


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """Switching the journal needs the file to itself, and SQLite does not wait for that switch
    however long busy_timeout is; workers opening a new file together take turns here."""
    deadline = time.monotonic() + BUSY_WAIT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SQLiteDatabase:
    """One connection on one thread: SQLite serialises writers anyway, and a
    single thread keeps every call off the event loop without locking games.
    WAL lets the gateway's worker processes share the file."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._local = threading.local()
        self.path = path
        self._tx_lock = asyncio.Lock()
        self._thread_connection: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_WAIT)
            conn.row_factory = sqlite3.Row
            _switch_to_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            self._thread_connection = conn
        return conn

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        return self._connection().execute(PLACEHOLDER.sub(r"?\1", sql), args).rowcount

    def _connection_for_loop(self) -> sqlite3.Connection:
        # The worker thread's connection, used from the loop only inside a transaction, whose
        # lock guarantees that the worker is not using it at the same moment.
        conn = self._thread_connection
        if conn is None:
            raise RuntimeError("no SQLite connection yet")
        return conn

    def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        cursor = self._connection().execute(PLACEHOLDER.sub(r"?\1", sql), args)
        return [dict(r) for r in cursor.fetchall()]

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._tx_lock:
            return int(await self._run(self._execute, sql, args))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._tx_lock:
            return list(await self._run(self._fetch, sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Unlocked]:
        # Statements of other tasks must not interleave with ours on the one connection.
        async with self._tx_lock:
            await self._run(self._execute, "BEGIN IMMEDIATE", ())
            try:
                yield _Unlocked(self)
            except BaseException:
                await self._run(self._execute, "ROLLBACK", ())
                raise
            await self._run(self._execute, "COMMIT", ())

    async def close(self) -> None:
        def close_connection() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None

        await self._run(close_connection)
        self._executor.shutdown(wait=True)


class _Unlocked:
    """The database as seen from inside its own transaction."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self.db = db
        self.dialect = db.dialect

    async def executemany(self, sql: str, rows: list[Any]) -> None:
        """Runs on the event loop's own thread, a slice at a time, yielding between slices.

        From the worker thread, sqlite3 releases and retakes the GIL for every row, and each
        retake forces the busy event loop to hand the GIL over: measured, that convoy cost the
        proxy a third of its throughput. Here the rows cost their SQLite time and no more; the
        transaction's lock keeps every other statement off the connection meanwhile."""
        sql = PLACEHOLDER.sub(r"?\1", sql)
        connection = self.db._connection_for_loop()
        for start in range(0, len(rows), INLINE_SLICE):
            connection.executemany(sql, rows[start:start + INLINE_SLICE])
            await asyncio.sleep(0)

    async def execute(self, sql: str, *args: Any) -> int:
        return int(await self.db._run(self.db._execute, sql, args))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self.db._run(self.db._fetch, sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None


class _PgQueries:
    """Queries on whatever runs them: the pool, or one connection inside a transaction."""

    dialect = "postgres"

    def __init__(self, target: Any) -> None:
        self.target = target

    async def execute(self, sql: str, *args: Any) -> int:
        status = await self.target.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self.target.fetch(sql, *args)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row = await self.target.fetchrow(sql, *args)
        return dict(row) if row is not None else None

    async def executemany(self, sql: str, rows: list[Any]) -> None:
        await self.target.executemany(sql, rows)

    async def copy_records(self, table: str, columns: tuple[str, ...], rows: list[list[Any]]) -> None:
        await self.target.copy_records_to_table(table, records=rows, columns=list(columns))

    def savepoint(self) -> Any:
        """Inside a transaction: `async with tx.savepoint():` undoes only its own statements if they fail."""
        return self.target.transaction()


class PostgresDatabase(_PgQueries):
    @classmethod
    async def connect(cls, url: str, min_size: int = 1, max_size: int = 10) -> PostgresDatabase:
        import asyncpg

        dsn, schema = split_schema(url)
        settings = {"search_path": schema} if schema else None
        if schema:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            except asyncpg.UniqueViolationError:
                pass  # another instance, starting at the same moment, created it first: IF NOT EXISTS races
            finally:
                await conn.close()
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, server_settings=settings)
        return cls(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgQueries]:
        async with self.target.acquire() as conn:
            async with conn.transaction():
                yield _PgQueries(conn)

    async def close(self) -> None:
        await self.target.close()


def split_schema(url: str) -> tuple[str, str | None]:
    """`postgresql://.../db?schema=s` (Prisma's convention, which LiteLLM users write) -> (dsn, "s")."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    if schema is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        raise ValueError(f"database_url schema {schema!r} is not a plain identifier")
    return urlunsplit(parts._replace(query=rest)), schema


async def open_database(url: str | None, sqlite_path: str) -> Database:
    if url and url.startswith(("postgres://", "postgresql://")):
        return await PostgresDatabase.connect(url)
    if url and url.startswith("sqlite:///"):
        return SQLiteDatabase(url.removeprefix("sqlite:///"))
    if url:
        raise ValueError(f"database_url must be postgresql://... or sqlite:///path, not {url.split(':')[0]}://...")
    return SQLiteDatabase(sqlite_path)
