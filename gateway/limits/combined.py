"""A request's whole admission on Redis as one Lua script: the caller's buckets and slots, its budget
counters and its deployment's buckets, one round trip instead of one per part.

The parts run in order and stop at the first refusal, as the plugins and the router did when
each made its own call; what came before the refusal stays taken (see gateway/admission.py). The
keys are the limiter's and the ledger's own (`RedisLimiter._key`, `RedisLedger._key`), and each
part does what its own script does (buckets.TAKE and ACQUIRE, ledger.RESERVE), so the counters
are the same ones the other calls read and settle.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from gateway.budget.ledger import Counter, Denied, RedisLedger
from gateway.limits.buckets import LEVEL, SLOT_TTL, Bucket, RedisLimiter, Short, SlotsFull

# ARGV: counts of caller buckets, slots, counters and deployment buckets; the slot token; the budget
# amount; then (amount, capacity) per caller bucket, the limit per slot set, (limit, baseline,
# expiry) per counter, (amount, capacity) per deployment bucket. KEYS in the same order.
# Answer: {0, caller levels..., spent before..., deployment levels...} when all is taken; else the
# refusing part (1 caller bucket short, 2 slots full, 3 budget denied, 4 deployment short), the
# index of what refused and its figures, then what the parts before it took.
ADMIT = LEVEL + """
local nb, ns, nc, nd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local token, amount = ARGV[5], tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
local out = {0}

local function check(first_key, first_arg, n)
  local levels = {}
  for i = 1, n do
    local want = tonumber(ARGV[first_arg + 2 * i - 2])
    local capacity = tonumber(ARGV[first_arg + 2 * i - 1])
    local level = level_of(KEYS[first_key + i - 1], capacity)
    if level < want then
      local wait = 60
      if capacity > 0 then wait = (want - level) * 60 / capacity end
      return nil, {i, tostring(level), tostring(wait)}
    end
    levels[i] = level
  end
  return levels, nil
end

local function take(first_key, first_arg, n, levels)
  for i = 1, n do
    local key = KEYS[first_key + i - 1]
    local left = levels[i] - tonumber(ARGV[first_arg + 2 * i - 2])
    redis.call('HSET', key, 'level', tostring(left), 'at', tostring(now))
    redis.call('EXPIRE', key, 120)
    table.insert(out, tostring(left))
  end
end

local function refuse(part, figures)
  local answer = {part}
  for _, v in ipairs(figures) do table.insert(answer, v) end
  for i = 2, #out do table.insert(answer, out[i]) end
  return answer
end

local key_at, arg_at = 1, 8
local levels, short = check(key_at, arg_at, nb)
if short then return refuse(1, short) end
local slot_key, slot_arg = key_at + nb, arg_at + 2 * nb
for i = 1, ns do
  local key = KEYS[slot_key + i - 1]
  local limit = tonumber(ARGV[slot_arg + i - 1])
  if redis.call('ZCARD', key) >= limit then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) >= limit then return refuse(2, {i}) end
  end
end
take(key_at, arg_at, nb, levels)
for i = 1, ns do
  local key = KEYS[slot_key + i - 1]
  redis.call('ZADD', key, now + ttl, token)
  redis.call('EXPIRE', key, math.ceil(ttl) + 60)
end

local counter_key, counter_arg = slot_key + ns, slot_arg + ns
local spent = {}
for i = 1, nc do
  local key = KEYS[counter_key + i - 1]
  local at = counter_arg + 3 * (i - 1)
  local limit = tonumber(ARGV[at])
  local state = redis.call('HMGET', key, 'spent', 'reserved')
  if not state[1] then
    redis.call('HSET', key, 'spent', ARGV[at + 1], 'reserved', 0)
    local expires = tonumber(ARGV[at + 2])
    if expires > 0 then redis.call('EXPIREAT', key, math.ceil(expires) + 3600) end
    state = {ARGV[at + 1], '0'}
  end
  local s, r = tonumber(state[1]), tonumber(state[2])
  if limit <= 0 or s >= limit * (1 - 1e-9) or s + r + amount > limit * (1 + 1e-9) then
    return refuse(3, {i, tostring(s), tostring(r)})
  end
  spent[i] = state[1]
end
for i = 1, nc do
  redis.call('HINCRBYFLOAT', KEYS[counter_key + i - 1], 'reserved', amount)
  table.insert(out, spent[i])
end

local deployment_key, deployment_arg = counter_key + nc, counter_arg + 3 * nc
levels, short = check(deployment_key, deployment_arg, nd)
if short then return refuse(4, short) end
take(deployment_key, deployment_arg, nd, levels)
return out
"""


class Plan(NamedTuple):
    """What one request asks for; empty lists for the parts it does not need."""

    buckets: list[Bucket]
    amounts: list[float]
    slots: list[tuple[str, int]]
    token: str
    counters: list[Counter]
    amount: float
    deployment: list[Bucket]
    deployment_amounts: list[float]


class Outcome(NamedTuple):
    """Each part's result; None for a part the refusal came before (nothing taken of it)."""

    limits: Short | SlotsFull | list[float]
    budget: Denied | list[float] | None
    deployment: Short | list[float] | None


class RedisAdmitter:
    def __init__(self, limiter: RedisLimiter, ledger: RedisLedger) -> None:
        self.limiter = limiter
        self.ledger = ledger
        self._admit = limiter.redis.register_script(ADMIT)

    async def admit(self, plan: Plan) -> Outcome:
        limiter, ledger = self.limiter, self.ledger
        nb, ns, nc, nd = len(plan.buckets), len(plan.slots), len(plan.counters), len(plan.deployment)
        keys = [limiter._key("bucket", b.name) for b in plan.buckets]
        keys += [limiter._key("slots", name) for name, _ in plan.slots]
        keys += [ledger._key(c.name) for c in plan.counters]
        keys += [limiter._key("bucket", b.name) for b in plan.deployment]
        args: list[Any] = [nb, ns, nc, nd, plan.token, repr(plan.amount), repr(SLOT_TTL)]
        for bucket, amount in zip(plan.buckets, plan.amounts):
            args += (repr(amount), repr(bucket.capacity))
        args += [limit for _, limit in plan.slots]
        for counter in plan.counters:
            args += (repr(counter.limit), repr(counter.baseline), repr(counter.expires_at or 0))
        for bucket, amount in zip(plan.deployment, plan.deployment_amounts):
            args += (repr(amount), repr(bucket.capacity))
        answer = await self._admit(keys=keys, args=args)
        part = int(answer[0])
        if part == 0:
            values = [float(v) for v in answer[1:]]
            return Outcome(values[:nb], values[nb:nb + nc], values[nb + nc:])
        if part == 1:
            return Outcome(Short(plan.buckets[int(answer[1]) - 1], max(float(answer[2]), 0.0), float(answer[3])),
                           None, None)
        if part == 2:
            return Outcome(SlotsFull(*plan.slots[int(answer[1]) - 1]), None, None)
        if part == 3:
            levels = [float(v) for v in answer[4:]]
            return Outcome(levels, Denied(plan.counters[int(answer[1]) - 1], float(answer[2]), float(answer[3])),
                           None)
        taken = [float(v) for v in answer[4:]]
        short = Short(plan.deployment[int(answer[1]) - 1], max(float(answer[2]), 0.0), float(answer[3]))
        return Outcome(taken[:nb], taken[nb:], short)
