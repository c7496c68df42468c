"""Spend counters that admit a request only if its estimate still fits every budget it falls under.

Each counter holds `spent` and `reserved`. `reserve` checks every counter and
then adds the estimate to each one's `reserved`, as one atomic step;
`settle` moves a request's reservation into `spent` at its real cost.
`LocalLedger` keeps the counters in this process (one event loop, so each
call is atomic by construction); `RedisLedger` keeps them in Redis, one Lua
script per call, so that every instance sharing the Redis shares the budgets.
A counter starts from the spend the store knew when it was first used.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from gateway.limits.settle_batch import SettleBatch

from gateway.redis_keys import shared_key


class Counter(NamedTuple):
    name: str  # unique per budget and period, e.g. "key:<hash>:<period end>"
    limit: float
    baseline: float  # what the store says was spent in this period when the counter is created
    expires_at: float | None  # when the counter can be forgotten (its period is over), epoch seconds


class Denied(NamedTuple):
    counter: Counter
    spent: float
    reserved: float = 0.0  # by requests in flight


class Ledger(Protocol):
    async def reserve(self, counters: list[Counter], amount: float) -> Denied | list[float]:
        """Denied, or what each counter had spent before this request."""

    async def settle(self, names: list[str], reserved: float, actual: float) -> None: ...

    def reserve_at_once(self, counters: list[Counter], amount: float) -> Denied | list[float] | None:
        """`reserve` without waiting where that is possible (this process); None if the caller must await it."""

    def settle_at_once(self, names: list[str], reserved: float, actual: float) -> bool:
        """Settle without waiting, where that is possible (this process, or a message to the node): True if
        done; False if the caller must await `settle` (a round trip to Redis)."""

    async def spent(self, name: str) -> float | None:
        """What the counter holds as spent; None if there is no such counter (nothing was reserved under it)."""

    async def copy(self, source: str, target: str, expires_at: float | None) -> float | None:
        """Start `target` from what `source` has spent (a regenerated key); None if there is no `source`."""

    async def close(self) -> None: ...


# Sums of float costs drift in the last bits; a request that fits to within this still fits.
TOLERANCE = 1e-9


def _over(limit: float, spent: float, reserved: float, amount: float) -> bool:
    # A budget of 0 admits nothing at all, not even a free request: LiteLLM's kill switch. Nor does a spent
    # one (LiteLLM refuses at spend >= max_budget), though the request's estimate is 0: a free model, or an
    # upload charged by the second, which is not known before the answer.
    return limit <= 0 or spent >= limit * (1 - TOLERANCE) or spent + reserved + amount > limit * (1 + TOLERANCE)


class LocalLedger:
    """The counters in this process. Each step is synchronous (the `_now` methods), so it is atomic
    on one event loop; the node's shared counters call those directly."""

    def __init__(self, clock: Any = time.time) -> None:
        self.counters: dict[str, list[float]] = {}  # name -> [spent, reserved, expires_at or inf]
        self.clock = clock
        self.last_sweep = 0.0

    def _get(self, counter: Counter) -> list[float]:
        found = self.counters.get(counter.name)
        if found is None:
            found = [counter.baseline, 0.0, counter.expires_at or float("inf")]
            self.counters[counter.name] = found
        return found

    async def reserve(self, counters: list[Counter], amount: float) -> Denied | list[float]:
        return self.reserve_now(counters, amount)

    async def settle(self, names: list[str], reserved: float, actual: float) -> None:
        self.settle_now(names, reserved, actual)

    def reserve_at_once(self, counters: list[Counter], amount: float) -> Denied | list[float] | None:
        return self.reserve_now(counters, amount)

    def settle_at_once(self, names: list[str], reserved: float, actual: float) -> bool:
        self.settle_now(names, reserved, actual)
        return True

    async def spent(self, name: str) -> float | None:
        return self.spent_now(name)

    async def copy(self, source: str, target: str, expires_at: float | None) -> float | None:
        return self.copy_now(source, target, expires_at)

    def reserve_now(self, counters: list[Counter], amount: float) -> Denied | list[float]:
        self._sweep()
        state = [self._get(c) for c in counters]
        for counter, (spent, reserved, _) in zip(counters, state):
            if _over(counter.limit, spent, reserved, amount):
                return Denied(counter, spent, reserved)
        for entry in state:
            entry[1] += amount
        return [entry[0] for entry in state]

    def settle_now(self, names: list[str], reserved: float, actual: float) -> None:
        for name in names:
            entry = self.counters.get(name)
            if entry is not None:
                entry[0] += actual
                entry[1] = max(0.0, entry[1] - reserved)

    def spent_now(self, name: str) -> float | None:
        entry = self.counters.get(name)
        return entry[0] if entry is not None else None

    def copy_now(self, source: str, target: str, expires_at: float | None) -> float | None:
        entry = self.counters.get(source)
        if entry is None:
            return None
        self.counters[target] = [entry[0], 0.0, expires_at or float("inf")]
        return entry[0]

    def _sweep(self) -> None:
        now = self.clock()
        if now - self.last_sweep < 60:
            return
        self.last_sweep = now
        for name in [n for n, e in self.counters.items() if e[2] < now and e[1] <= 0]:
            del self.counters[name]

    async def close(self) -> None:
        pass


RESERVE = """
local amount = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 * i])
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'spent', ARGV[3 * i + 1], 'reserved', 0)
    local expires = tonumber(ARGV[3 * i + 2])
    if expires > 0 then redis.call('EXPIREAT', key, math.ceil(expires) + 3600) end
  end
  local spent = tonumber(redis.call('HGET', key, 'spent'))
  local reserved = tonumber(redis.call('HGET', key, 'reserved'))
  if limit <= 0 or spent >= limit * (1 - 1e-9) or spent + reserved + amount > limit * (1 + 1e-9) then
    return {i, tostring(spent), tostring(reserved)}
  end
end
local spent = {0}
for _, key in ipairs(KEYS) do
  redis.call('HINCRBYFLOAT', key, 'reserved', amount)
  table.insert(spent, redis.call('HGET', key, 'spent'))
end
return spent
"""

SETTLE = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBYFLOAT', key, 'spent', ARGV[2])
    local left = redis.call('HINCRBYFLOAT', key, 'reserved', -tonumber(ARGV[1]))
    if tonumber(left) < 0 then redis.call('HSET', key, 'reserved', 0) end
  end
end
return 1
"""


COPY = """
local spent = redis.call('HGET', KEYS[1], 'spent')
if not spent then return false end
redis.call('HSET', KEYS[2], 'spent', spent, 'reserved', 0)
local expires = tonumber(ARGV[1])
if expires > 0 then redis.call('EXPIREAT', KEYS[2], math.ceil(expires) + 3600) end
return spent
"""


class RedisLedger:
    def __init__(self, redis: Any, prefix: str, batch: SettleBatch | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.batch = batch  # settlements sent with others', in one pipeline, rather than awaited one by one
        self._reserve = redis.register_script(RESERVE)
        self._settle = redis.register_script(SETTLE)
        self._copy = redis.register_script(COPY)

    def _key(self, name: str) -> str:
        return shared_key(self.prefix, "budget", name)

    async def reserve(self, counters: list[Counter], amount: float) -> Denied | list[float]:
        if not counters:
            return []
        args: list[Any] = [repr(amount), repr(time.time())]
        for counter in counters:
            args += [repr(counter.limit), repr(counter.baseline), repr(counter.expires_at or 0)]
        answer = await self._reserve(keys=[self._key(c.name) for c in counters], args=args)
        if int(answer[0]) != 0:
            return Denied(counters[int(answer[0]) - 1], float(answer[1]), float(answer[2]))
        return [float(v) for v in answer[1:]]

    def reserve_at_once(self, counters: list[Counter], amount: float) -> Denied | list[float] | None:
        return None

    def settle_at_once(self, names: list[str], reserved: float, actual: float) -> bool:
        if self.batch is None:
            return False
        if names:
            self.batch.script(self._settle, [self._key(n) for n in names], [repr(reserved), repr(actual)])
        return True

    async def settle(self, names: list[str], reserved: float, actual: float) -> None:
        if names:
            await self._settle(keys=[self._key(n) for n in names], args=[repr(reserved), repr(actual)])

    async def spent(self, name: str) -> float | None:
        value = await self.redis.hget(self._key(name), "spent")
        return float(value) if value is not None else None

    async def copy(self, source: str, target: str, expires_at: float | None) -> float | None:
        value = await self._copy(keys=[self._key(source), self._key(target)], args=[repr(expires_at or 0)])
        return float(value) if value is not None else None

    async def close(self) -> None:
        pass
