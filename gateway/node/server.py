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
from typing import Any

import msgspec

from gateway.budget.ledger import Counter, Denied, LocalLedger
from gateway.limits.buckets import Bucket, LocalLimiter, Short
from gateway.node import wire
from gateway.router import Router

log = logging.getLogger("gateway.node")


class NodeState:
    """What the messages act on; one per node."""

    def __init__(self, router: Router) -> None:
        self.limiter = LocalLimiter()
        self.ledger = LocalLedger()
        self.router = router
        self.deployments = {d.id: d for d in router.deployments}
        self.workers: set[Worker] = set()

    def handle(self, message: Any, sender: Worker) -> bytes | None:
        """The answer to a call (a framed Reply), or None for a cast."""
        match message:
            case wire.Take(id=id, names=names, capacities=capacities, amounts=amounts):
                taken = self.limiter.take_now([Bucket(n, c) for n, c in zip(names, capacities)], amounts)
                value: Any = ([1, names.index(taken.bucket.name), taken.remaining, taken.retry_after]
                              if isinstance(taken, Short) else [0, *taken])
            case wire.Give(names=names, capacities=capacities, amount=amount):
                self.limiter.give_now([Bucket(n, c) for n, c in zip(names, capacities)], amount)
                return None
            case wire.Acquire(id=id, names=names, limits=limits, token=token):
                full = self.limiter.acquire_now(list(zip(names, limits)), token)
                value = names.index(full[0]) + 1 if full is not None else 0
            case wire.Release(names=names, token=token):
                self.limiter.release_now(names, token)
                return None
            case wire.Reserve(id=id, counters=counters, amount=amount):
                reserved = self.ledger.reserve_now([Counter(*c) for c in counters], amount)
                value = ([1, [c[0] for c in counters].index(reserved.counter.name), reserved.spent]
                         if isinstance(reserved, Denied) else [0, *reserved])
            case wire.Settle(names=names, reserved=reserved_amount, actual=actual):
                self.ledger.settle_now(names, reserved_amount, actual)
                return None
            case wire.Spent(id=id, name=name):
                value = self.ledger.spent_now(name)
            case wire.Copy(id=id, source=source, target=target, expires_at=expires_at):
                value = self.ledger.copy_now(source, target, expires_at)
            case wire.Failure(deployment=deployment, retry_after=retry_after):
                self._failure(deployment, retry_after, sender)
                return None
            case wire.Success(deployment=deployment):
                found = self.deployments.get(deployment)
                if found is not None and found.failures:
                    self.router.record_success(found)
                    self._broadcast(wire.frame(wire.Failing(deployment, False)))
                return None
            case wire.Ping(id=id):
                value = True
            case _:
                raise ValueError(f"unknown message {message!r}")
        return wire.frame(wire.Reply(id, value))

    def _failure(self, deployment_id: str, retry_after: float | None, sender: Worker) -> None:
        deployment = self.deployments.get(deployment_id)
        if deployment is None:
            return
        was_failing, was_until = deployment.failures > 0, deployment.cooldown_until
        self.router.record_failure(deployment, retry_after)
        if deployment.cooldown_until != was_until:
            until = deployment.cooldown_until
            counted = was_until <= self.router.clock()
            for worker in self.workers:
                worker.send(wire.frame(wire.Cooldown(deployment_id, until, counted and worker is sender)))
        if (deployment.failures > 0) != was_failing:
            self._broadcast(wire.frame(wire.Failing(deployment_id, deployment.failures > 0)))

    def _broadcast(self, framed: bytes) -> None:
        for worker in self.workers:
            worker.send(framed)


class Worker(asyncio.Protocol):
    """One worker's connection."""

    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.frames = wire.Frames(msgspec.msgpack.Decoder(wire.ToNode))
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport
        self.state.workers.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.workers.discard(self)
        self.transport = None

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
        self.loop = asyncio.new_event_loop()
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
