"""What plugins and management routes share: one object, built once per process."""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

from gateway import durations
from gateway.accounts import Accounts
from gateway.config import Config
from gateway.identity import Authenticator
from gateway.router import Router
from gateway.spend.spool import Spool
from gateway.spend.writer import SpendWriter
from gateway.store.database import open_database
from gateway.store.records import TeamRecord
from gateway.store.store import TEAMS, Store

log = logging.getLogger("gateway")


class Services:
    __slots__ = ("config", "router", "store", "accounts", "authenticator", "spool", "spend_writer", "clock")

    def __init__(self, config: Config, router: Router, store: Store, accounts: Accounts,
                 authenticator: Authenticator, spool: Spool, spend_writer: SpendWriter,
                 clock: Callable[[], float] = time.time) -> None:
        self.spool = spool
        self.spend_writer = spend_writer
        self.config = config
        self.router = router
        self.store = store
        self.accounts = accounts
        self.authenticator = authenticator
        self.clock = clock

    async def close(self) -> None:
        await self.spend_writer.close()
        await self.accounts.close()
        await self.store.close()


def master_key(config: Config) -> str | None:
    return config.general_settings.master_key or os.environ.get("LITELLM_MASTER_KEY") or None


def database_url(config: Config) -> str | None:
    return config.general_settings.database_url or os.environ.get("DATABASE_URL") or None


async def open_services(config: Config, router: Router) -> Services:
    url = database_url(config)
    db = await open_database(url, config.gateway_settings.database_path)
    store = Store(db)
    await store.start()
    await sync_config_teams(config, store)
    accounts = Accounts(store)
    await accounts.start()
    master = master_key(config)
    if master is None:
        log.warning("no master_key is configured (general_settings.master_key or LITELLM_MASTER_KEY): "
                    "the proxy is open to anyone who can reach it")
    log.info("store: %s", "postgresql" if db.dialect == "postgres" else f"sqlite {config.gateway_settings.database_path}")
    authenticator = Authenticator(accounts, master, config.general_settings.litellm_key_header_name)
    spool = Spool(config.gateway_settings.spool_dir)
    writer = SpendWriter(spool, store)
    writer.start()
    return Services(config, router, store, accounts, authenticator, spool, writer)


async def sync_config_teams(config: Config, store: Store) -> None:
    """Teams written in config.yaml: created, or brought in line with the file; their spend is kept."""
    now = time.time()
    for team in config.teams:
        fields = {
            "team_alias": team.team_alias, "models": team.models,
            "max_budget": team.max_budget if team.max_budget is not None else team.budget_limit,
            "budget_duration": team.budget_duration, "tpm_limit": team.tpm_limit, "rpm_limit": team.rpm_limit,
            "max_parallel_requests": team.max_parallel_requests, "blocked": team.blocked,
            "metadata": team.metadata, "from_config": True,
        }
        existing = await store.get(TEAMS, team.team_id)
        if existing is None:
            reset = durations.add(now, team.budget_duration) if team.budget_duration else None
            await store.insert(TEAMS, TeamRecord(team_id=team.team_id, budget_reset_at=reset, **fields))
        elif any(getattr(existing, k) != v for k, v in fields.items()):
            await store.update(TEAMS, team.team_id, fields)
