"""The name of every Redis key and channel the gateway uses.

Every name carries the gateway's key prefix as a Redis Cluster hash tag (`{llmgw}:bucket:...`), so all
of them hash to one slot: a Lua script may then touch any mix of them (a key's buckets, its team's
budget, the deployment's limits) atomically, on Cluster as on a single Redis, and never fails with
CROSSSLOT. The price is that one gateway fleet's counters live on one shard; fleets that need more
give each its own `redis_key_prefix`, which lands on its own slot.
"""

from __future__ import annotations


def shared_key(prefix: str, *parts: str) -> str:
    return "{" + prefix + "}:" + ":".join(parts)
