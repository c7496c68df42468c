"""Moves spooled spend records into the store in batches, off the request path, and retries while it is down."""

from __future__ import annotations

import asyncio
import logging

from gateway.spend.spool import Spool, read_segment
from gateway.store.store import Store

log = logging.getLogger("gateway.spend")

INTERVAL = 0.5
MAX_BACKOFF = 10.0


class SpendWriter:
    def __init__(self, spool: Spool, store: Store, interval: float = INTERVAL) -> None:
        self.spool = spool
        self.store = store
        self.interval = interval
        self.task: asyncio.Task[None] | None = None
        self.failing = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="spend-writer")

    async def _run(self) -> None:
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The records stay in the spool; try again, less often while the store stays down.
                delay = min(delay * 2, MAX_BACKOFF)
                if not self.failing:
                    log.warning("spend records wait in the spool: the store is unreachable (%s: %s)",
                                type(exc).__name__, exc)
                self.failing = True
                continue
            if self.failing:
                log.info("store reachable again: spooled spend records written")
            self.failing = False
            delay = self.interval

    async def flush(self) -> int:
        """Write every ready segment to the store; the number of records that were new."""
        self.spool.rotate()
        written = 0
        for path in self.spool.pending():
            lines = await asyncio.to_thread(read_segment, path)
            if lines:
                written += await self.store.write_spend_lines(lines)
            path.unlink(missing_ok=True)
        return written

    async def close(self, timeout: float = 5.0) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except Exception as exc:
            log.warning("spend records left in the spool for the next start: %s: %s", type(exc).__name__, exc)
        self.spool.close()
