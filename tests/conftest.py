from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from gateway.config import parse_config
from gateway.node.client import NodeClient
from gateway.node.server import NodeServer
from gateway.redis_keys import shared_key
from gateway.router import Router
from gateway.store.database import open_database
from gateway.store.store import Store
from tests.fakes import FakeUpstream


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("alpha").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def upstream_b() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("beta").start()
    yield fake
    fake.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


POSTGRES_URL = os.environ.get("GATEWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def server_missing(what: str, reason: str) -> None:
    """Skip on a developer's machine without the server; under CI its absence is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true: {reason}")
    pytest.skip(f"{what} not reachable ({reason}); set GATEWAY_TEST_DATABASE_URL / start it to run this test")


@pytest.fixture(scope="session")
async def postgres_base() -> str:
    import asyncpg

    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await conn.close()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not here"
        server_missing("PostgreSQL", f"{POSTGRES_URL}: {type(exc).__name__}: {exc}")
    return POSTGRES_URL


@asynccontextmanager
async def scratch_schema(postgres_base: str, label: str = "test") -> AsyncIterator[str]:
    """A database URL whose `?schema=` is new, dropped when the block ends."""
    import asyncpg

    schema = f"gw_{label}_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in postgres_base else "?"
    yield f"{postgres_base}{separator}schema={schema}"
    conn = await asyncpg.connect(postgres_base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def postgres_url(postgres_base: str) -> AsyncIterator[str]:
    """A database URL whose `?schema=` is this test's own, dropped afterwards."""
    async with scratch_schema(postgres_base) as url:
        yield url


REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
async def redis_base() -> str:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not here"
        server_missing("Redis", f"{REDIS_URL}: {type(exc).__name__}: {exc}")
    finally:
        await client.aclose()
    return REDIS_URL


@asynccontextmanager
async def scratch_prefix(redis_base: str) -> AsyncIterator[str]:
    """A new Redis key prefix; every key under it is deleted when the block ends."""
    import redis.asyncio

    prefix = f"gwtest-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.asyncio.Redis.from_url(redis_base)
    try:
        async for key in client.scan_iter(match=shared_key(prefix, "*"), count=500):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix(redis_base: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    async with scratch_prefix(redis_base) as prefix:
        yield prefix


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on both backends: a fresh SQLite file, and a schema of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(database_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store(await open_database(database_url, str(tmp_path / "unused.db")))
    await opened.start()
    yield opened
    await opened.close()


@pytest.fixture(params=["local", "redis", "node"])
def backend(request: pytest.FixtureRequest) -> str:
    """For contracts that hold in this process, in Redis and in the node's counters alike."""
    return str(request.param)


@pytest.fixture
def shared_state(backend: str, request: pytest.FixtureRequest) -> tuple[str, str] | None:
    """Redis's (url, key prefix) when the backend is Redis."""
    if backend != "redis":
        return None
    return str(request.getfixturevalue("redis_base")), str(request.getfixturevalue("redis_prefix"))


@pytest.fixture
async def redis_client(shared_state: tuple[str, str] | None) -> AsyncIterator[object | None]:
    if shared_state is None:
        yield None
        return
    import redis.asyncio

    client = redis.asyncio.Redis.from_pool(
        redis.asyncio.BlockingConnectionPool.from_url(shared_state[0], max_connections=16))
    yield client
    await client.aclose()


@pytest.fixture
async def node_client() -> AsyncIterator[NodeClient]:
    """A worker's connection to node counters served on a thread, as the supervisor serves them."""
    config = parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]})
    folder = tempfile.mkdtemp(prefix="gwnode-")  # short: a Unix socket's path has a small limit
    server = NodeServer(os.path.join(folder, "counters.sock"), Router(config))
    server.start()
    client = NodeClient(server.path, Router(config), timeout=5.0, fail_open=True)
    await client.start()
    try:
        yield client
    finally:
        await client.close()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
