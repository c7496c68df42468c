"""Spend log upkeep off the request path: PostgreSQL's day partitions made ahead of time, and retention
(`general_settings.maximum_spend_logs_retention_period`, run every `maximum_spend_logs_retention_interval`,
a day unless set, as LiteLLM does). Every instance runs it; the store makes running it twice harmless."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway import durations
from gateway.spend import partitions
from gateway.store.store import Store

log = logging.getLogger("gateway.spend")

CHECK_INTERVAL = 3600.0
DAYS_AHEAD = 2
DEFAULT_RETENTION_INTERVAL = "1d"


class SpendUpkeep:
    def __init__(self, store: Store, retention_period: str | None, retention_interval: str | None,
                 clock: Callable[[], float] = time.time, check_interval: float = CHECK_INTERVAL) -> None:
        self.store = store
        self.retention_period = retention_period
        self.retention_interval = retention_interval or DEFAULT_RETENTION_INTERVAL
        self.clock = clock
        self.check_interval = check_interval
        self.next_retention: float | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="spend-upkeep")

    async def _run(self) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("spend log upkeep failed (tried again in %.0f s): %s: %s", self.check_interval,
                            type(exc).__name__, exc)
            await asyncio.sleep(self.check_interval)

    async def run_due(self) -> None:
        """Make the coming days' partitions; apply retention when its interval has come round (at once
        on the first run)."""
        now = self.clock()
        today = partitions.day_of(now)
        await self.store.ensure_spend_partitions({today + i for i in range(DAYS_AHEAD + 1)})
        if self.retention_period is None or (self.next_retention is not None and now < self.next_retention):
            return
        cutoff = durations.subtract(now, self.retention_period)
        gone = await self.store.prune_spend_logs(cutoff)
        self.next_retention = durations.add(now, self.retention_interval)
        if gone:
            unit = "partitions" if self.store.db.dialect == "postgres" else "records"
            log.info("spend log retention (%s): %d %s before %s dropped", self.retention_period, gone, unit,
                     durations.iso(cutoff))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
