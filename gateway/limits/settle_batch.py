"""Settlements for Redis, gathered across requests and sent as one pipeline.

A request's settlement (its budget reservation replaced by the real cost, its tpm estimate given
back, its parallel slots released, its deployment's tokens) needs no answer, so none is awaited:
each is queued here, in the settlement path (`settle_at_once`), and every `interval` seconds, or
as soon as `most` are waiting, they go to Redis as one pipeline, each command as it would have
been sent alone (the same scripts, the same keys). `close` sends whatever is still queued, so a
settlement made before shutdown is not lost.

Over the gateway's own connection (gateway/redis_wire.py) a batch is one script call, not one
command per settlement: the scripts in it become Lua functions of one script (`merged`), which
runs each settlement in turn with its own keys and arguments, exactly as its script would alone.

A pipeline that fails is logged and dropped, as a single settlement that failed was: slots expire
by themselves, and a reservation left behind is gone with its counter's period.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from gateway.background import Background
from gateway.metrics.redis_timing import Script
from gateway.metrics.tallies import REDIS_BUCKETS, Tallies
from gateway.redis_wire import RedisWire
from gateway.shared_link import SharedLink, reported

log = logging.getLogger("gateway.settle")

INTERVAL = 0.01  # seconds a settlement may wait for others to go with it
MOST = 512  # settlements sent at once, without waiting for the interval

LABELS = ("settle",)  # one pipeline is one call, timed as such
Item = tuple[Script | None, list[str], list[Any]]  # a script (or ZREM when None), its keys and args

ZREM = "redis.call('ZREM', KEYS[1], ARGV[1])"
# ARGV[1] is the number of settlements; each then has (function, key count, argument count) and its
# arguments in ARGV, and its keys in KEYS, in order.
RUN_EACH = """
local at_key, at = 1, 2
for _ = 1, tonumber(ARGV[1]) do
  local run, nk, na = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  at = at + 3
  local keys, args = {}, {}
  for j = 1, nk do keys[j] = KEYS[at_key + j - 1] end
  for j = 1, na do args[j] = ARGV[at + j - 1] end
  functions[run](keys, args)
  at_key, at = at_key + nk, at + na
end
return 1
"""


def merged(bodies: list[str]) -> str:
    """One script whose function i runs script body i with its own KEYS and ARGV."""
    functions = ",\n".join(f"function(KEYS, ARGV)\n{body}\nend" for body in bodies)
    return f"local functions = {{\n{functions}\n}}\n{RUN_EACH}"


class SettleBatch:
    def __init__(self, redis: Any, link: SharedLink, tallies: Tallies, interval: float = INTERVAL,
                 most: int = MOST, wire: RedisWire | None = None) -> None:
        self.redis = redis
        self.wire = wire  # the gateway's own pipelined connection, when there is one; else redis-py's pipeline
        self.link = link
        self.tallies = tallies
        self.interval = interval
        self.most = most
        self.items: list[Item] = []
        self.loaded: set[str] = set()
        self.merged: dict[tuple[str, ...], tuple[str, str]] = {}  # script SHAs -> merged script and its SHA
        self.timer: asyncio.TimerHandle | None = None
        self.background = Background()

    def script(self, script: Script, keys: list[str], args: list[Any]) -> None:
        self._add((script, keys, args))

    def zrem(self, key: str, member: str) -> None:
        self._add((None, [key], [member]))

    def _add(self, item: Item) -> None:
        self.items.append(item)
        if len(self.items) >= self.most:
            self._send()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.interval, self._send)

    def _send(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        items, self.items = self.items, []
        if items:
            self.background.spawn(self._flush(items))

    async def _flush(self, items: list[Item]) -> None:
        link = self.link
        if link.down:
            log.warning("%d settlements not sent: Redis is unreachable", len(items))
            return
        started = time.perf_counter()
        try:
            async with asyncio.timeout(link.timeout * 4):
                if self.wire is not None:
                    await self._wire_pipeline(self.wire, items, link.timeout * 4)
                else:
                    await self._pipeline(items)
        except Exception as exc:
            self.tallies.add("litellm_redis_fails", LABELS)
            link.failed(exc)
            if not reported(exc):
                log.error("%d settlements not sent to Redis: %s: %s", len(items), type(exc).__name__, exc)
            else:
                log.warning("%d settlements not sent: %s: %s", len(items), type(exc).__name__, exc)
        finally:
            self.tallies.observe("litellm_redis_latency", LABELS, time.perf_counter() - started, REDIS_BUCKETS)

    async def _pipeline(self, items: list[Item]) -> None:
        for unloaded in {id(s): s for s, _, _ in items if s is not None and s.sha not in self.loaded}.values():
            await self.redis.script_load(unloaded.script)
            self.loaded.add(unloaded.sha)
        pipe = self.redis.pipeline(transaction=False)
        for script, keys, args in items:
            if script is None:
                pipe.zrem(keys[0], *args)
            else:
                # Not pipe.evalsha: redis-py's Cluster pipeline refuses that method (not the command).
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        results = await pipe.execute(raise_on_error=False)
        again = [item for item, result in zip(items, results) if isinstance(result, NoScriptError)]
        if again:  # Redis restarted or its scripts were flushed: each is sent by itself, loading it
            self.loaded.clear()
            for retried, keys, args in again:
                assert retried is not None
                await retried(keys=keys, args=args)
        failed = next((r for r in results if isinstance(r, Exception) and not isinstance(r, NoScriptError)), None)
        if failed is not None:
            raise failed

    async def _wire_pipeline(self, wire: RedisWire, items: list[Item], timeout: float) -> None:
        index: dict[str, int] = {}
        bodies: list[str] = []
        keys: list[str] = []
        args: list[Any] = [len(items)]
        for script, item_keys, item_args in items:
            sha, body = ("zrem", ZREM) if script is None else (script.sha, script.script)
            assert isinstance(body, str)
            run = index.get(sha)
            if run is None:
                run = index[sha] = len(bodies) + 1
                bodies.append(body)
            keys += item_keys
            args += (run, len(item_keys), len(item_args), *item_args)
        signature = tuple(index)
        found = self.merged.get(signature)
        if found is None:
            text = merged(bodies)
            found = self.merged[signature] = (text, hashlib.sha1(text.encode()).hexdigest())
        text, sha = found
        reply = await wire.call(("EVALSHA", sha, len(keys), *keys, *args), timeout)
        if isinstance(reply, NoScriptError):  # not cached on this server yet (or any more): sent whole
            reply = await wire.call(("EVAL", text, len(keys), *keys, *args), timeout)
        if isinstance(reply, RedisError):  # an error reply; NOAUTH and WRONGPASS are not ResponseErrors
            raise reply

    async def close(self) -> None:
        self._send()
        await self.background.finish()
