"""The node's counters: served by the supervisor of `--workers N` on a Unix socket, so that every
worker takes from the same buckets, slots, budgets and deployment failure counts, exactly as one
process would. Each message is handled whole before the next (one event loop, synchronous steps),
so every check-and-take is atomic; the answers to one read go back in one write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from gateway.budget.ledger import Counter, Denied, LocalLedger
from gateway.limits.buckets import Bucket, LocalLimiter, Short, SlotsFull
from gateway.node import wire
from gateway.router import Router
from gateway.server import event_loop_factory

log = logging.getLogger("gateway.node")

CASTS = frozenset({wire.Give, wire.Release, wire.Settle, wire.Success})


class NodeState:
    """What the messages act on; one per node."""

    def __init__(self, router: Router) -> None:
        self.limiter = LocalLimiter()
        self.ledger = LocalLedger()
        self.router = router
        self.workers: set[Worker] = set()
        self.handlers: dict[type, Callable[[Any, Worker], Any]] = {
            wire.Take: self._take, wire.Admit: self._admit, wire.Give: self._give, wire.Acquire: self._acquire,
            wire.Release: self._release, wire.Reserve: self._reserve, wire.Settle: self._settle,
            wire.Spent: self._spent, wire.Copy: self._copy, wire.Ping: self._ping, wire.Success: self._success,
            wire.Failure: self._failure,
        }

    def handle(self, message: Any, sender: Worker) -> bytes | None:
        """The answer to a call (a framed Reply), or None for a cast."""
        kind = type(message)
        value = self.handlers[kind](message, sender)
        return None if kind in CASTS else wire.frame(wire.Reply(message.id, value))

    def _take(self, m: wire.Take, sender: Worker) -> Any:
        taken = self.limiter.take_now([Bucket(n, c) for n, c in zip(m.names, m.capacities)], m.amounts)
        return [1, m.names.index(taken.bucket.name), taken.remaining, taken.retry_after] \
            if isinstance(taken, Short) else [0, *taken]

    def _admit(self, m: wire.Admit, sender: Worker) -> Any:
        admitted = self.limiter.admit_now([Bucket(n, c) for n, c in zip(m.names, m.capacities)], m.amounts,
                                          list(zip(m.slots, m.limits)), m.token)
        if isinstance(admitted, Short):
            return [1, m.names.index(admitted.bucket.name), admitted.remaining, admitted.retry_after]
        if isinstance(admitted, SlotsFull):
            return [2, m.slots.index(admitted.name)]
        if m.slots:
            sender.slots[m.token] = m.slots
        return [0, *admitted]

    def _give(self, m: wire.Give, sender: Worker) -> None:
        self.limiter.give_now([Bucket(n, c) for n, c in zip(m.names, m.capacities)], m.amount)

    def _acquire(self, m: wire.Acquire, sender: Worker) -> Any:
        full = self.limiter.acquire_now(list(zip(m.names, m.limits)), m.token)
        if full is None:
            sender.slots[m.token] = m.names
        return m.names.index(full[0]) + 1 if full is not None else 0

    def _release(self, m: wire.Release, sender: Worker) -> None:
        self.limiter.release_now(m.names, m.token)
        sender.slots.pop(m.token, None)

    def _reserve(self, m: wire.Reserve, sender: Worker) -> Any:
        reserved = self.ledger.reserve_now([Counter(*c) for c in m.counters], m.amount)
        return [1, [c[0] for c in m.counters].index(reserved.counter.name), reserved.spent, reserved.reserved] \
            if isinstance(reserved, Denied) else [0, *reserved]

    def _settle(self, m: wire.Settle, sender: Worker) -> None:
        self.ledger.settle_now(m.names, m.reserved, m.actual)

    def _spent(self, m: wire.Spent, sender: Worker) -> Any:
        return self.ledger.spent_now(m.name)

    def _copy(self, m: wire.Copy, sender: Worker) -> Any:
        return self.ledger.copy_now(m.source, m.target, m.expires_at)

    def _ping(self, m: wire.Ping, sender: Worker) -> Any:
        return True

    def _success(self, m: wire.Success, sender: Worker) -> None:
        found = self.router.by_id.get(m.deployment)
        if found is not None and found.failures:
            self.router.record_success(found)
            self._broadcast(wire.frame(wire.Failing(m.deployment, False)))

    def _failure(self, m: wire.Failure, sender: Worker) -> None:
        """The Cooldown frames are written to every worker before the sender's Reply, which is written
        after this returns: the sender answers its client only once every worker knows."""
        deployment = self.router.by_id.get(m.deployment)
        if deployment is None:
            return
        was_failing, was_until = deployment.failures > 0, deployment.cooldown_until
        self.router.count_failure(deployment, m.retry_after)
        if deployment.cooldown_until != was_until:
            until = deployment.cooldown_until
            counted = was_until <= self.router.clock()
            for worker in self.workers:
                worker.send(wire.frame(wire.Cooldown(m.deployment, until, counted and worker is sender)))
        if (deployment.failures > 0) != was_failing:
            self._broadcast(wire.frame(wire.Failing(m.deployment, deployment.failures > 0)))

    def _broadcast(self, framed: bytes) -> None:
        for worker in self.workers:
            worker.send(framed)

    def standing(self) -> bytes:
        """What a worker that connects (a new one, or one that lost the node) must be told at once: the
        cooldowns still running and the deployments counting failures, which it would otherwise learn only
        at their next change."""
        now = self.router.clock()
        frames = [wire.frame(wire.Cooldown(d.id, d.cooldown_until, False))
                  for d in self.router.by_id.values() if d.cooldown_until > now]
        frames += [wire.frame(wire.Failing(d.id, True)) for d in self.router.by_id.values() if d.failures > 0]
        return b"".join(frames)


class Worker(asyncio.Protocol):
    """One worker's connection."""

    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.frames = wire.Frames(msgspec.msgpack.Decoder(wire.ToNode))
        self.transport: asyncio.Transport | None = None
        self.slots: dict[str, list[str]] = {}  # request -> the slot sets it holds, until it releases them

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport
        self.state.workers.add(self)
        standing = self.state.standing()
        if standing:
            self.send(standing)

    def connection_lost(self, exc: Exception | None) -> None:
        """A worker that dies leaves its requests' parallel slots to the others at once, not after
        their ten-minute expiry. (Its budget reservations stay until their period ends: a budget
        then admits less, never more.)"""
        self.state.workers.discard(self)
        self.transport = None
        for token, names in self.slots.items():
            self.state.limiter.release_now(names, token)
        self.slots.clear()

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.frames.feed(data)
        except msgspec.DecodeError as exc:
            log.error("node counters: a worker sent what is not a message (%s); closing its connection", exc)
            if self.transport is not None:
                self.transport.abort()
            return
        answers = [answer for message in messages if (answer := self.state.handle(message, self)) is not None]
        if answers and self.transport is not None:
            self.transport.write(b"".join(answers))


class NodeServer:
    """The counters' event loop on a thread of the supervisor, listening on `path`."""

    def __init__(self, path: str, router: Router) -> None:
        self.path = path
        self.state = NodeState(router)
        factory = event_loop_factory()
        self.loop = factory() if factory is not None else asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="node-counters", daemon=True)
        self.server: asyncio.AbstractServer | None = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)

    async def _listen(self) -> None:
        self.server = await self.loop.create_unix_server(lambda: Worker(self.state), self.path)
        os.chmod(self.path, 0o600)

    def stop(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
            for worker in list(self.state.workers):
                if worker.transport is not None:
                    worker.transport.abort()
            if self.server is not None:
                await self.server.wait_closed()

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        if not self.loop.is_running():
            self.loop.close()
