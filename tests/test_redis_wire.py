"""The gateway's own Redis connection (gateway/redis_wire.py) against the real Redis: replies of every
kind, error replies as redis-py's exceptions, a script sent whole when Redis does not know it, a
connection Redis dropped replaced by the next call, and a settlement batch run as one merged script."""

from __future__ import annotations

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from gateway.budget.ledger import Counter, RedisLedger
from gateway.limits.buckets import Bucket, RedisLimiter
from gateway.limits.settle_batch import SettleBatch
from gateway.metrics.redis_timing import TimedRedis
from gateway.metrics.tallies import Tallies
from gateway.redis_keys import shared_key
from gateway.redis_wire import RedisWire, _pack_bytes, pack
from gateway.shared_link import SharedLink


def test_pack_matches_resp_for_text_numbers_bytes_and_non_ascii() -> None:
    for command in [("SET", "k", 3), ("HSET", "clé", "at", 1.25), ("SET", "k", b"\x00\xff")]:
        assert pack(command) == _pack_bytes(command)
    assert pack(("GET", "ké")) == "*2\r\n$3\r\nGET\r\n$3\r\nké\r\n".encode()


async def test_replies_errors_and_scripts(redis_base: str, redis_prefix: str) -> None:
    wire = RedisWire.for_pool(redis.asyncio.BlockingConnectionPool.from_url(redis_base))
    assert wire is not None
    try:
        key = f"{redis_prefix}:wire"
        replies = await wire.pipeline([("SET", key, "ünï"), ("GET", key), ("GET", f"{key}:none"),
                                       ("EVAL", "return {1, 'a', false, {2}}", 0), ("INCR", key)], 1.0)
        assert replies[:4] == [b"OK", "ünï".encode(), None, [1, b"a", None, [2]]]
        assert isinstance(replies[4], ResponseError)
        assert isinstance(await wire.call(("EVALSHA", "0" * 40, 0), 1.0), NoScriptError)
    finally:
        await wire.close()


async def test_a_dropped_connection_is_replaced_by_the_next_call(redis_base: str) -> None:
    wire = RedisWire.for_pool(redis.asyncio.BlockingConnectionPool.from_url(redis_base))
    assert wire is not None
    admin = redis.asyncio.Redis.from_url(redis_base)
    try:
        name = b"gateway-wire-test"
        assert await wire.call(("CLIENT", "SETNAME", name), 1.0) == b"OK"
        await admin.execute_command("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal", "ID",
                                    (await wire.call(("CLIENT", "ID"), 1.0)))
        try:
            await wire.call(("PING",), 1.0)  # on the killed connection, if its close was not seen yet
        except RedisConnectionError:
            pass
        assert await wire.call(("PING",), 1.0) == b"PONG"
    finally:
        await wire.close()
        await admin.aclose()


async def test_a_batch_of_settlements_runs_as_one_merged_script(redis_base: str, redis_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_base)
    wire = RedisWire.for_pool(client.connection_pool)
    assert wire is not None
    tallies = Tallies()
    link = SharedLink("Redis", client.ping, 1.0, False)
    batch = SettleBatch(client, link, tallies, wire=wire)
    limiter = RedisLimiter(TimedRedis(client, tallies, "rate_limit", link, wire), redis_prefix, batch)
    ledger = RedisLedger(TimedRedis(client, tallies, "budget", link, wire), redis_prefix, batch)
    try:
        await client.script_flush()  # the merged script and the others are sent whole, then run by SHA
        bucket = Bucket("tpm:wire", 1000.0)
        assert await limiter.take_each([bucket], [600.0]) == [400.0]
        assert await ledger.reserve([Counter("wire", 10.0, 1.0, None)], 2.0) == [1.0]
        assert await limiter.acquire([("wire", 5)], "request-1") is None
        for _ in range(2):
            assert limiter.settle_at_once(["wire"], "request-1", [bucket], 100.0)
            assert ledger.settle_at_once(["wire"], 1.0, 0.75)
            await batch.close()
        level = float(await client.hget(shared_key(redis_prefix, "bucket", "tpm", "wire"), "level") or 0)
        assert 600.0 <= level < 620.0  # 400 + 2 * 100, and what refilled meanwhile
        assert await client.hmget(shared_key(redis_prefix, "budget", "wire"), "spent", "reserved") == [b"2.5", b"0"]
        assert await client.zcard(shared_key(redis_prefix, "slots", "wire")) == 0
        assert await client.script_exists(batch.merged[("zrem", limiter._give.sha, ledger._settle.sha)][1]) == [True]
    finally:
        await wire.close()
        await client.aclose()
