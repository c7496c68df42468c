"""Keys, users, teams and organizations as the hot path sees them: from memory, kept fresh by the change log.

A record is read from the store once per instance and then served from
memory. A background task polls the store's change log and drops changed
records, so a block, delete or update made on any instance takes effect on
every instance within one poll interval (well under a second). Concurrent
misses for one record share a single store read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from prometheus_client import Counter

from gateway.background import Background
from gateway.store.records import BudgetRecord, EndUserRecord, KeyRecord, OrgRecord, TeamRecord, UserRecord
from gateway.store.store import BUDGETS, END_USERS, ORGS, TEAMS, USERS, Store

log = logging.getLogger("gateway.accounts")

T = TypeVar("T")
POLL_INTERVAL = 0.25
# A missing record is re-read after this long, so a key made on another instance works at once there.
NEGATIVE_TTL = 0.5
# Re-read every record at least this often, in case a change log entry was ever missed.
POSITIVE_TTL = 60.0
# Made-up keys: at most this many remembered as missing, and this many store reads a second for
# references never seen before.
MAX_MISSES = 10_000
UNKNOWN_READS_PER_SECOND = 50.0
STORE_READS = Counter("litellm_auth_store_reads", "Store reads for keys, users and teams not in memory", ["found"])
UNKNOWN_REFUSED = Counter("litellm_auth_unknown_reads_refused", "Lookups of never-seen keys answered as unknown "
                          "without a store read, because such reads were over their per-second cap")
RECENT_WINDOW = 5.0
# Budgets are enforced per period by the ledger at once; the store's spend columns follow within this.
BUDGET_RESET_INTERVAL = 10.0


def new_raw_key() -> str:
    return "sk-" + secrets.token_urlsafe(32)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def key_name(raw: str) -> str:
    return f"sk-...{raw[-4:]}"


def is_hashed(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class RecordCache(Generic[T]):
    """Records by reference, read from the store once and then served from memory.

    A reference the store does not have is remembered in a bounded LRU. For keys, which anyone can
    make up (users and teams are named only by real keys), store reads for references never seen
    are capped per second, so a flood of made-up keys costs neither memory nor store load.
    References the store has had (cached once, or named by the change log) are read whatever the
    cap, so real keys are not held back by a flood.
    """

    __slots__ = ("load", "entries", "misses", "vouched", "loading", "clock", "read_budget", "budget_at",
                 "reads_per_second", "max_misses")

    def __init__(self, load: Callable[[str], Awaitable[T | None]], clock: Callable[[], float],
                 reads_per_second: float | None = None, max_misses: int = MAX_MISSES) -> None:
        self.load = load
        self.clock = clock
        self.entries: dict[str, tuple[T, float]] = {}
        self.misses: OrderedDict[str, float] = OrderedDict()
        self.vouched: set[str] = set()
        self.loading: dict[str, asyncio.Future[T | None]] = {}
        self.reads_per_second = reads_per_second
        self.max_misses = max_misses
        self.read_budget = reads_per_second or 0.0
        self.budget_at = clock()

    async def get(self, ref: str) -> T | None:
        now = self.clock()
        entry = self.entries.get(ref)
        if entry is not None and now - entry[1] < POSITIVE_TTL:
            return entry[0]
        missed_at = self.misses.get(ref)
        if missed_at is not None:
            if now - missed_at < NEGATIVE_TTL:
                self.misses.move_to_end(ref)
                return None
            del self.misses[ref]
        pending = self.loading.get(ref)
        if pending is not None:
            return await asyncio.shield(pending)
        if entry is None and ref not in self.vouched and not self._may_read_unknown(now):
            UNKNOWN_REFUSED.inc()
            return None  # over the cap: a reference never seen is taken as unknown, unread
        future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self.loading[ref] = future
        try:
            value = await self.load(ref)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited failure is not reported twice
            raise
        finally:
            self.loading.pop(ref, None)
        self.vouched.discard(ref)
        STORE_READS.labels("true" if value is not None else "false").inc()
        self.put(ref, value)
        future.set_result(value)
        return value

    def _may_read_unknown(self, now: float) -> bool:
        rate = self.reads_per_second
        if rate is None:
            return True
        self.read_budget = min(rate, self.read_budget + (now - self.budget_at) * rate)
        self.budget_at = now
        if self.read_budget < 1.0:
            return False
        self.read_budget -= 1.0
        return True

    def put(self, ref: str, value: T | None) -> None:
        if value is not None:
            self.entries[ref] = (value, self.clock())
            self.misses.pop(ref, None)
            return
        self.entries.pop(ref, None)
        self.misses[ref] = self.clock()
        self.misses.move_to_end(ref)
        while len(self.misses) > self.max_misses:
            self.misses.popitem(last=False)

    def drop(self, ref: str) -> None:
        """The record changed somewhere: read it again next time, whatever the cap."""
        self.entries.pop(ref, None)
        self.misses.pop(ref, None)
        if len(self.vouched) >= self.max_misses:
            self.vouched.clear()  # only ever refs the change log named; a flood of changes is not expected
        self.vouched.add(ref)


class Accounts:
    """With Redis, a change is also published on a channel that every instance listens to, so it
    lands everywhere at once; the change log poll stays as the backstop (and the only way without Redis)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time, poll_interval: float = POLL_INTERVAL,
                 redis: Any = None, channel: str = "llmgw:changes") -> None:
        self.store = store
        self.clock = clock
        self.poll_interval = poll_interval
        self.redis = redis
        self.channel = channel
        self._publishing = Background()
        self._listener: asyncio.Task[None] | None = None
        self.keys: RecordCache[KeyRecord] = RecordCache(store.key_for_requests, time.monotonic,
                                                        reads_per_second=UNKNOWN_READS_PER_SECOND)
        self.users: RecordCache[UserRecord] = RecordCache(lambda ref: store.get(USERS, ref), time.monotonic)
        self.teams: RecordCache[TeamRecord] = RecordCache(lambda ref: store.get(TEAMS, ref), time.monotonic)
        # End users are named by whoever sends a request, as keys are: reads of unknown ones are capped too.
        self.end_users: RecordCache[EndUserRecord] = RecordCache(lambda ref: store.get(END_USERS, ref),
                                                                 time.monotonic,
                                                                 reads_per_second=UNKNOWN_READS_PER_SECOND)
        self.budgets: RecordCache[BudgetRecord] = RecordCache(lambda ref: store.get(BUDGETS, ref), time.monotonic)
        self.orgs: RecordCache[OrgRecord] = RecordCache(lambda ref: store.get(ORGS, ref), time.monotonic)
        self._caches: dict[str, RecordCache[Any]] = {"key": self.keys, "user": self.users, "team": self.teams,
                                                     "end_user": self.end_users, "budget": self.budgets,
                                                     "organization": self.orgs}
        # Other kinds of record someone keeps in memory (models, credentials, access groups): told of each change.
        self.watchers: dict[str, Callable[[str], None]] = {}
        self._seq = 0
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._seq = await self.store.latest_change()
        self._poller = asyncio.create_task(self._poll(), name="accounts-change-poller")
        if self.redis is not None:
            self._listener = asyncio.create_task(self._listen(), name="accounts-change-listener")

    async def close(self) -> None:
        tasks = [t for t in (self._poller, self._listener, *self._publishing.tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def changed(self, kind: str, ref: str) -> None:
        """This instance changed a record: forget it here, and tell the others."""
        self._drop(kind, ref)
        if self.redis is not None:
            self._publishing.spawn(self._publish(f"{kind}:{ref}"))

    def _drop(self, kind: str, ref: str) -> None:
        cache = self._caches.get(kind)
        if cache is not None:
            cache.drop(ref)
        elif (watcher := self.watchers.get(kind)) is not None:
            watcher(ref)

    async def _publish(self, message: str) -> None:
        try:
            await self.redis.publish(self.channel, message)
        except Exception as exc:
            log.warning("could not publish a change (the change log will carry it): %s: %s",
                        type(exc).__name__, exc)

    async def _listen(self) -> None:
        lost = ""  # said once until it changes or a subscription holds again: a wrong password is not news each second
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    lost = ""
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            kind, _, ref = message["data"].decode().partition(":")
                            self._drop(kind, ref)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Closing the subscription while being cancelled can raise a connection
                    # error in place of the cancellation: the cancellation wins.
                    raise asyncio.CancelledError from exc
                said = f"{type(exc).__name__}: {exc}"
                if said != lost:
                    log.warning("change channel lost (%s); the change log poll carries on", said)
                lost = said
                await asyncio.sleep(1.0)

    async def _poll(self) -> None:
        last_prune = last_reset = time.monotonic()
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                self._seq, changes = await self.store.changes_since(self._seq, time.time() - RECENT_WINDOW)
                for kind, ref in changes:
                    self._drop(kind, ref)
                if time.monotonic() - last_reset > BUDGET_RESET_INTERVAL:
                    last_reset = time.monotonic()
                    if reset := await self.store.reset_due_budgets(self.clock()):
                        log.info("budgets: %d keys, users or teams started a new budget period", reset)
                if time.monotonic() - last_prune > 600:
                    await self.store.prune_changes(time.time() - 3600)
                    last_prune = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The store is down: keep serving from memory and try again next round.
                log.warning("change log poll failed: %s: %s", type(exc).__name__, exc)
