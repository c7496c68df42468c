"""Which deployment holds each stored response, so that a retrieve, a delete, a list of its input items or
a `previous_response_id` goes to the deployment that made it.

A mapping in the database rather than the deployment written into the id the client sees: the answer is
relayed byte for byte, so the upstream's id is the id, and a response made through one gateway instance is
found through any other that shares the database. Each id is kept in this process at once (a retrieve
right after a create, on the same instance, never misses) and written to the database off the request
path; another instance finds it once that write is in, a few milliseconds later. A row goes KEEP_DAYS
after it was written (OpenAI's own retention). Answers created with `store: false`, and those of chat-only
deployments (translated, never stored upstream), are not kept.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict

from gateway.background import Background
from gateway.store.database import Database

log = logging.getLogger("gateway")

LOCAL_IDS = 10_000  # the newest ids known to this process without asking the database
KEEP_DAYS = 30  # OpenAI keeps a stored response 30 days; its row goes some time after
PRUNE_EVERY = 1000  # rows written by this process between two prunes
# The response's id is the first member of OpenAI's Response object, and of its response.created event's.
ID = re.compile(rb'"id"\s*:\s*"(resp_[A-Za-z0-9_-]{1,200})"')


def response_id(head: bytes) -> str | None:
    """The response id in the first bytes of an answer or a stream."""
    found = ID.search(head)
    return found.group(1).decode("ascii") if found else None


class ResponseRoutes:
    __slots__ = ("db", "local", "background", "written")

    def __init__(self, db: Database) -> None:
        self.db = db
        self.local: OrderedDict[str, str] = OrderedDict()
        self.background = Background()
        self.written = 0

    def remember(self, response: str, deployment_id: str) -> None:
        self._keep(response, deployment_id)
        self.background.spawn(self._write(response, deployment_id))
        self.written += 1
        if self.written % PRUNE_EVERY == 0:
            self.background.spawn(self.prune(time.time() - KEEP_DAYS * 86400))

    async def prune(self, before: float) -> None:
        try:
            await self.db.execute("DELETE FROM gw_response_routes WHERE created_at < $1", before)
        except Exception as exc:
            log.warning("could not prune the stored responses' routes: %s", exc)

    async def _write(self, response: str, deployment_id: str) -> None:
        try:
            await self.db.execute("INSERT INTO gw_response_routes (response_id, deployment_id, created_at) "
                                  "VALUES ($1, $2, $3) ON CONFLICT (response_id) DO NOTHING",
                                  response, deployment_id, time.time())
        except Exception as exc:  # the answer is out; only other instances miss it
            log.warning("could not record which deployment holds response %s: %s", response, exc)

    async def deployment_of(self, response: str) -> str | None:
        found = self.local.get(response)
        if found is not None:
            return found
        row = await self.db.fetchrow("SELECT deployment_id FROM gw_response_routes WHERE response_id = $1",
                                     response)
        if row is None:
            return None
        found = str(row["deployment_id"])
        self._keep(response, found)
        return found

    async def forget(self, response: str) -> None:
        self.local.pop(response, None)
        await self.db.execute("DELETE FROM gw_response_routes WHERE response_id = $1", response)

    def _keep(self, response: str, deployment_id: str) -> None:
        self.local[response] = deployment_id
        if len(self.local) > LOCAL_IDS:
            self.local.popitem(last=False)

    async def close(self) -> None:
        await self.background.finish()
