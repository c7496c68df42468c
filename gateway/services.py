"""What plugins and management routes share: one object, built once per process."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from gateway import durations
from gateway.accounts import Accounts
from gateway.budget.ledger import Ledger, LocalLedger, RedisLedger
from gateway.config import Config
from gateway.identity import Authenticator
from gateway.limits.buckets import Limiter, LocalLimiter, RedisLimiter
from gateway.limits.settle_batch import SettleBatch
from gateway.metrics.redis_timing import TimedRedis
from gateway.metrics.tallies import Tallies
from gateway.node.client import NodeClient, NodeLedger, NodeLimiter
from gateway.pricing import Pricing
from gateway.redis_client import close_redis, open_redis, probe_key, redis_target
from gateway.redis_keys import shared_key
from gateway.redis_refusal import refusal
from gateway.redis_tls import tls_context
from gateway.redis_wire import RedisWire
from gateway.router import Router
from gateway.shared_link import SharedLink
from gateway.spend.spool import Spool
from gateway.spend.upkeep import SpendUpkeep
from gateway.spend.writer import SpendWriter
from gateway.store.database import SQLiteDatabase, open_database
from gateway.store.records import AccessGroupRecord, TeamRecord
from gateway.store.store import ACCESS_GROUPS, TEAMS, Conflict, Store

log = logging.getLogger("gateway")

class Services:
    __slots__ = ("config", "router", "store", "accounts", "authenticator", "spool", "spend_writer", "clock",
                 "pricing", "ledger", "redis", "redis_link", "node", "limiter", "tallies", "settle_batch",
                 "spend_upkeep", "redis_wire")

    def __init__(self, config: Config, router: Router, store: Store, accounts: Accounts,
                 authenticator: Authenticator, spool: Spool, spend_writer: SpendWriter, pricing: Pricing,
                 ledger: Ledger, limiter: Limiter, tallies: Tallies, redis: Any = None,
                 redis_link: SharedLink | None = None, node: NodeClient | None = None,
                 clock: Callable[[], float] = time.time, settle_batch: SettleBatch | None = None,
                 spend_upkeep: SpendUpkeep | None = None, redis_wire: RedisWire | None = None) -> None:
        self.settle_batch = settle_batch
        self.spend_upkeep = spend_upkeep
        self.redis_wire = redis_wire
        self.redis_link = redis_link
        self.node = node
        self.tallies = tallies
        self.limiter = limiter
        self.pricing = pricing
        self.ledger = ledger
        self.redis = redis
        self.spool = spool
        self.spend_writer = spend_writer
        self.config = config
        self.router = router
        self.store = store
        self.accounts = accounts
        self.authenticator = authenticator
        self.clock = clock

    async def close(self) -> None:
        if self.spend_upkeep is not None:
            await self.spend_upkeep.close()
        await self.spend_writer.close()
        await self.ledger.close()
        if self.settle_batch is not None:
            await self.settle_batch.close()  # every settlement made before shutdown reaches Redis
        if self.redis_wire is not None:
            await self.redis_wire.close()
        if self.redis_link is not None:
            await self.redis_link.close()
        if self.node is not None:
            await self.node.close()
        # The change listener before the client it listens on: a subscription whose client closed
        # under it tries again, through Sentinel, and took up to 5 seconds to give up.
        await self.accounts.close()
        if self.redis is not None:
            await close_redis(self.redis)
        await self.store.close()


def master_key(config: Config) -> str | None:
    return config.general_settings.master_key or os.environ.get("LITELLM_MASTER_KEY") or None


def database_url(config: Config) -> str | None:
    return config.general_settings.database_url or os.environ.get("DATABASE_URL") or None


async def open_services(config: Config, router: Router) -> Services:
    settings = config.gateway_settings
    target = redis_target(config)
    # Certificate files are read before anything is opened: one that cannot be used stops the start.
    tls = tls_context(target.tls) if target is not None and target.tls is not None else None
    url = database_url(config)
    db = await open_database(url, config.gateway_settings.database_path)
    store = Store(db)
    await store.start()
    await sync_config_teams(config, store)
    redis = open_redis(target, settings.redis_timeout, tls) if target is not None else None
    if target is not None:
        log.info("shared state: %s", target.describe())
    accounts = Accounts(store, poll_interval=settings.change_poll_interval, redis=redis,
                        channel=shared_key(settings.redis_key_prefix, "changes"))
    groups = router.access_groups
    groups.attach(lambda: stored_access_groups(store))
    await groups.reload()
    accounts.watchers["access_group"] = groups.changed
    await accounts.start()
    master = master_key(config)
    if master is None:
        log.warning("no master_key is configured (general_settings.master_key or LITELLM_MASTER_KEY): "
                    "the proxy is open to anyone who can reach it")
    # The file actually opened: database_url's sqlite:/// path wins over database_path.
    log.info("store: %s", f"sqlite {os.path.abspath(db.path)}" if isinstance(db, SQLiteDatabase) else "postgresql")
    authenticator = Authenticator(accounts, master, config.general_settings.litellm_key_header_name)
    spool = Spool(config.gateway_settings.spool_dir)
    writer = SpendWriter(spool, store, settings.spend_write_interval)
    writer.start()
    general = config.general_settings
    upkeep = SpendUpkeep(store, general.maximum_spend_logs_retention_period,
                         general.maximum_spend_logs_retention_interval)
    upkeep.start()
    ledger: Ledger
    limiter: Limiter
    tallies = Tallies()
    link = None
    batch = None
    wire = None
    # The workers of one node count deployment failures together, and without Redis share every counter.
    node = NodeClient.from_environment(router, settings.redis_timeout, settings.fail_open)
    if node is not None:
        await node.start()
    if redis is not None:
        probe = probe_key(settings.redis_key_prefix)
        pool = getattr(redis, "connection_pool", None)  # a Cluster client keeps a pool a node, and mends them
        link = SharedLink("Redis", lambda: redis.get(probe), settings.redis_timeout, settings.fail_open,
                          explain=refusal,
                          on_found=(lambda: pool.disconnect(inuse_connections=False)) if pool is not None else None)
        link.check(lambda: TimedRedis(redis, tallies, "check", link).get(probe))  # timed and counted
        # The scripts that admit and settle requests go over a connection of the gateway's own (one
        # server, TLS or not: Sentinel and Cluster stay on redis-py).
        wire = RedisWire.for_pool(getattr(redis, "connection_pool", None), tls)
        batch = SettleBatch(redis, link, tallies, wire=wire)
        ledger = RedisLedger(TimedRedis(redis, tallies, "budget", link, wire), settings.redis_key_prefix, batch)
        limiter = RedisLimiter(TimedRedis(redis, tallies, "rate_limit", link, wire), settings.redis_key_prefix,
                               batch)
        log.info("limits and budgets: shared through Redis%s",
                 ", its scripts pipelined on a connection of the gateway's own" if wire is not None else "")
    elif node is not None:
        ledger = NodeLedger(node)
        limiter = NodeLimiter(node)
        log.info("limits and budgets: shared by the node's workers")
    else:
        ledger = LocalLedger()
        limiter = LocalLimiter()
    pricing = Pricing()
    for deployment in router.deployments:
        price = pricing.price(deployment, deployment.model_template)
        deployment.unit_cost = price.input_cost_per_token + price.output_cost_per_token
    return Services(config, router, store, accounts, authenticator, spool, writer, pricing, ledger, limiter,
                    tallies, redis, link, node, settle_batch=batch, spend_upkeep=upkeep, redis_wire=wire)


async def stored_access_groups(store: Store) -> list[AccessGroupRecord]:
    return (await store.find(ACCESS_GROUPS, {}))[0]


async def sync_config_teams(config: Config, store: Store) -> None:
    """Teams written in config.yaml: created, or brought in line with the file; their spend is kept."""
    now = time.time()
    for team in config.teams:
        fields: dict[str, Any] = {
            "team_alias": team.team_alias, "models": team.models,
            "max_budget": team.max_budget if team.max_budget is not None else team.budget_limit,
            "budget_duration": team.budget_duration, "tpm_limit": team.tpm_limit, "rpm_limit": team.rpm_limit,
            "max_parallel_requests": team.max_parallel_requests, "blocked": team.blocked,
            "metadata": team.metadata, "from_config": True,
        }
        existing = await store.get(TEAMS, team.team_id)
        if existing is None:
            reset = durations.add(now, team.budget_duration) if team.budget_duration else None
            try:
                await store.insert(TEAMS, TeamRecord(team_id=team.team_id, budget_reset_at=reset, **fields))
                continue
            except Conflict:  # another worker or instance starting with the same file made it first
                existing = await store.get(TEAMS, team.team_id)
        if existing is not None and any(getattr(existing, k) != v for k, v in fields.items()):
            await store.update(TEAMS, team.team_id, fields)
