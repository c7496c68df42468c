"""Token buckets and parallel slots, in this process or in Redis, with the same behaviour.

A bucket of `capacity` refills at capacity/60 a second (rpm and tpm are per
minute). `take` checks every bucket and takes `amount` from each (`take_each`:
an amount of its own from each), as one atomic step, or takes nothing and says
which bucket was short and when it will have enough. `give` puts tokens back, or takes more (a negative
amount), when a request's real token count is known. A slot set counts
requests in flight; each slot has an expiry so that none can leak.

The Redis version runs one Lua script per call and reads Redis's own clock,
so that instances with skewed clocks still share one limit.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from gateway.limits.settle_batch import SettleBatch

from gateway.redis_keys import shared_key

SLOT_TTL = 600.0  # a request holding a slot longer than this is presumed gone


class Bucket(NamedTuple):
    name: str
    capacity: float  # per minute


class Short(NamedTuple):
    bucket: Bucket
    remaining: float
    retry_after: float  # seconds until the bucket holds what was asked for


class SlotsFull(NamedTuple):
    name: str
    limit: int


class Limiter(Protocol):
    async def take(self, buckets: list[Bucket], amount: float) -> Short | list[float]:
        """Short, or what each bucket holds after taking."""

    async def take_each(self, buckets: list[Bucket], amounts: list[float]) -> Short | list[float]:
        """`take` with one amount per bucket: requests and tokens in one step."""

    async def give(self, buckets: list[Bucket], amount: float) -> None: ...

    async def acquire(self, slots: list[tuple[str, int]], token: str) -> tuple[str, int] | None:
        """Take a slot in each set (name, limit) for `token`; the full set, if one is full."""

    async def release(self, names: list[str], token: str) -> None: ...

    async def admit(self, buckets: list[Bucket], amounts: list[float], slots: list[tuple[str, int]],
                    token: str) -> Short | SlotsFull | list[float]:
        """`take_each` and `acquire` together: everything is taken, or nothing."""

    def settle_at_once(self, slots: list[str], token: str, buckets: list[Bucket], amount: float) -> bool:
        """`release` and `give` without waiting, where that is possible (this process, or a message to the
        node): True if done; False if the caller must await them (round trips to Redis)."""


def _drop_stale(held: dict[str, float], now: float) -> int:
    """Slots past their expiry are dropped only when they would turn a request away; how many are left."""
    for stale in [t for t, expiry in held.items() if expiry <= now]:
        del held[stale]
    return len(held)


def _refill(level: float, stamp: float, capacity: float, now: float) -> float:
    return min(capacity, level + (now - stamp) * capacity / 60.0)


class LocalLimiter:
    """The buckets and slots in this process. Each step is synchronous (the `_now` methods), so it
    is atomic on one event loop; the node's shared counters call those directly."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # name -> (level, when)
        self.slots: dict[str, dict[str, float]] = {}  # name -> token -> expiry

    def _level(self, bucket: Bucket, now: float) -> float:
        level, stamp = self.buckets.get(bucket.name, (bucket.capacity, now))
        return _refill(level, stamp, bucket.capacity, now)

    async def take(self, buckets: list[Bucket], amount: float) -> Short | list[float]:
        return self.take_now(buckets, [amount] * len(buckets))

    async def take_each(self, buckets: list[Bucket], amounts: list[float]) -> Short | list[float]:
        return self.take_now(buckets, amounts)

    async def give(self, buckets: list[Bucket], amount: float) -> None:
        self.give_now(buckets, amount)

    async def acquire(self, slots: list[tuple[str, int]], token: str) -> tuple[str, int] | None:
        return self.acquire_now(slots, token)

    async def release(self, names: list[str], token: str) -> None:
        self.release_now(names, token)

    async def admit(self, buckets: list[Bucket], amounts: list[float], slots: list[tuple[str, int]],
                    token: str) -> Short | SlotsFull | list[float]:
        return self.admit_now(buckets, amounts, slots, token)

    def settle_at_once(self, slots: list[str], token: str, buckets: list[Bucket], amount: float) -> bool:
        if slots:
            self.release_now(slots, token)
        if buckets:
            self.give_now(buckets, amount)
        return True

    def admit_now(self, buckets: list[Bucket], amounts: list[float], slots: list[tuple[str, int]],
                  token: str) -> Short | SlotsFull | list[float]:
        now = self.clock()
        for name, limit in slots:
            held = self.slots.setdefault(name, {})
            if len(held) >= limit and _drop_stale(held, now) >= limit:
                return SlotsFull(name, limit)
        taken = self.take_now(buckets, amounts) if buckets else []
        if isinstance(taken, Short):
            return taken
        for name, _ in slots:
            self.slots[name][token] = now + SLOT_TTL
        return taken

    def take_now(self, buckets: list[Bucket], amounts: list[float]) -> Short | list[float]:
        now = self.clock()
        levels = [self._level(b, now) for b in buckets]
        for bucket, level, amount in zip(buckets, levels, amounts):
            if level < amount:
                wait = (amount - level) * 60.0 / bucket.capacity if bucket.capacity > 0 else 60.0
                return Short(bucket, max(level, 0.0), wait)
        for bucket, level, amount in zip(buckets, levels, amounts):
            self.buckets[bucket.name] = (level - amount, now)
        return [level - amount for level, amount in zip(levels, amounts)]

    def give_now(self, buckets: list[Bucket], amount: float) -> None:
        now = self.clock()
        for bucket in buckets:
            level = self._level(bucket, now) + amount
            self.buckets[bucket.name] = (min(level, bucket.capacity), now)

    def acquire_now(self, slots: list[tuple[str, int]], token: str) -> tuple[str, int] | None:
        now = self.clock()
        for name, limit in slots:
            held = self.slots.setdefault(name, {})
            if len(held) >= limit and _drop_stale(held, now) >= limit:
                return name, limit
        for name, _ in slots:
            self.slots[name][token] = now + SLOT_TTL
        return None

    def release_now(self, names: list[str], token: str) -> None:
        for name in names:
            self.slots.get(name, {}).pop(token, None)


# Shared by the bucket scripts: Redis's clock, and a bucket's level refilled up to now.
LEVEL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level_of(key, capacity)
  local state = redis.call('HMGET', key, 'level', 'at')
  if not state[1] then return capacity end
  return math.min(capacity, tonumber(state[1]) + (now - tonumber(state[2])) * capacity / 60)
end
"""

# ARGV: an amount and a capacity for each key, in turn.
TAKE = LEVEL + """
local levels = {}
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local level = level_of(key, capacity)
  if level < amount then
    local wait = 60
    if capacity > 0 then wait = (amount - level) * 60 / capacity end
    return {i, tostring(level), tostring(wait)}
  end
  levels[i] = level
end
local left = {0}
for i, key in ipairs(KEYS) do
  levels[i] = levels[i] - tonumber(ARGV[2 * i - 1])
  redis.call('HSET', key, 'level', tostring(levels[i]), 'at', tostring(now))
  redis.call('EXPIRE', key, 120)
  table.insert(left, tostring(levels[i]))
end
return left
"""

GIVE = LEVEL + """
local amount = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[i + 1])
  local level = level_of(key, capacity)
  redis.call('HSET', key, 'level', tostring(math.min(capacity, level + amount)), 'at', tostring(now))
  redis.call('EXPIRE', key, 120)
end
return 1
"""

ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[i + 2]) then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + tonumber(ARGV[2]), ARGV[1])
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[2])) + 60)
end
return 0
"""


class RedisLimiter:
    def __init__(self, redis: Any, prefix: str, batch: SettleBatch | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.batch = batch  # settlements sent with others', in one pipeline, rather than awaited one by one
        self._take = redis.register_script(TAKE)
        self._give = redis.register_script(GIVE)
        self._acquire = redis.register_script(ACQUIRE)

    def _key(self, kind: str, name: str) -> str:
        return shared_key(self.prefix, kind, name)

    async def take(self, buckets: list[Bucket], amount: float) -> Short | list[float]:
        return await self.take_each(buckets, [amount] * len(buckets))

    async def take_each(self, buckets: list[Bucket], amounts: list[float]) -> Short | list[float]:
        args: list[str] = []
        for bucket, amount in zip(buckets, amounts):
            args += (repr(amount), repr(bucket.capacity))
        answer = await self._take(keys=[self._key("bucket", b.name) for b in buckets], args=args)
        if int(answer[0]) != 0:
            return Short(buckets[int(answer[0]) - 1], max(float(answer[1]), 0.0), float(answer[2]))
        return [float(v) for v in answer[1:]]

    async def give(self, buckets: list[Bucket], amount: float) -> None:
        await self._give(keys=[self._key("bucket", b.name) for b in buckets],
                         args=[repr(amount), *(repr(b.capacity) for b in buckets)])

    async def acquire(self, slots: list[tuple[str, int]], token: str) -> tuple[str, int] | None:
        full = await self._acquire(keys=[self._key("slots", name) for name, _ in slots],
                                   args=[token, repr(SLOT_TTL), *(str(limit) for _, limit in slots)])
        return slots[int(full) - 1] if int(full) else None

    async def release(self, names: list[str], token: str) -> None:
        for name in names:
            await self.redis.zrem(self._key("slots", name), token)

    def settle_at_once(self, slots: list[str], token: str, buckets: list[Bucket], amount: float) -> bool:
        batch = self.batch
        if batch is None:
            return False
        for name in slots:
            batch.zrem(self._key("slots", name), token)
        if buckets:
            batch.script(self._give, [self._key("bucket", b.name) for b in buckets],
                         [repr(amount), *(repr(b.capacity) for b in buckets)])
        return True

    async def admit(self, buckets: list[Bucket], amounts: list[float], slots: list[tuple[str, int]],
                    token: str) -> Short | SlotsFull | list[float]:
        taken = await self.take_each(buckets, amounts) if buckets else []
        if isinstance(taken, Short) or not slots:
            return taken
        full = await self.acquire(slots, token)
        if full is None:
            return taken
        for bucket, amount in zip(buckets, amounts):
            await self.give([bucket], amount)
        return SlotsFull(*full)
